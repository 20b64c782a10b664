import type { Logger } from "./logger.ts";

interface Pending {
  level: "warn" | "error";
  fields?: Record<string, unknown>;
  until: number;
  count: number;
}

/**
 * Logs an event that can repeat many times a second (a write failing on a full
 * disk) at most once per interval: the first occurrence at once, then one line
 * per interval saying how many more there were (`repeated=N`), with the fields
 * of the latest. `flush()` (called on a timer) writes counts still waiting.
 */
export class RepeatedLog {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly logger: Logger, private readonly intervalMs = 10_000, private readonly now: () => number = Date.now) {}

  error(msg: string, fields?: Record<string, unknown>): void {
    this.note("error", msg, fields);
  }

  warn(msg: string, fields?: Record<string, unknown>): void {
    this.note("warn", msg, fields);
  }

  /** True while an interval is open (a count may still have to be written by flush). */
  get waiting(): boolean {
    return this.pending.size > 0;
  }

  /** Writes the counts of events whose interval is over. */
  flush(): void {
    const now = this.now();
    for (const [msg, p] of this.pending) {
      if (now < p.until) continue;
      if (p.count > 0) this.logger[p.level](msg, { ...p.fields, repeated: p.count, over_seconds: this.intervalMs / 1000 });
      this.pending.delete(msg);
    }
  }

  private note(level: Pending["level"], msg: string, fields?: Record<string, unknown>): void {
    const now = this.now();
    const p = this.pending.get(msg);
    if (p && now < p.until) {
      p.count++;
      p.fields = fields;
      p.level = level;
      return;
    }
    if (p && p.count > 0) this.logger[level](msg, { ...fields, repeated: p.count + 1, over_seconds: this.intervalMs / 1000 });
    else this.logger[level](msg, fields);
    this.pending.set(msg, { level, fields, until: now + this.intervalMs, count: 0 });
  }
}
