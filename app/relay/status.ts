/** Where a destination's connection stands. */
export type DestinationState = "connecting" | "connected" | "backing-off" | "error" | "stopped";

/** A destination's live status and counters, as the API shows them. */
export class DestinationStatus {
  state: DestinationState = "connecting";
  since = new Date().toISOString();
  lastError: string | null = null;
  lastErrorAt: string | null = null;
  /** The code and reason of the last websocket close (null before any). */
  lastCloseCode: number | null = null;
  lastCloseReason: string | null = null;
  /** Connection attempts, and failed ones in a row (0 once a connection has proved healthy). */
  attempts = 0;
  failures = 0;
  /** ms since the current run of failures began; null while healthy. */
  failingSince: number | null = null;
  connects = 0;
  messagesOut = 0;
  bytesOut = 0;
  messagesIn = 0;
  bytesIn = 0;
  dropped = 0;
  /** Store and forward (rules with `"resume": true`): the cursor and the backlog. */
  resume: (() => Record<string, unknown>) | null = null;

  /** Moves to `state`, noting when. */
  set(state: DestinationState): void {
    if (this.state === state) return;
    this.state = state;
    this.since = new Date().toISOString();
  }

  /** Keeps an error for the status (the latest one). */
  fail(message: string): void {
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
  }

  /** Counts a failed attempt (an error, a refusal, a connection that did not last). */
  failedAttempt(now = Date.now()): void {
    this.failures++;
    this.failingSince ??= now;
  }

  /** A connection has proved healthy: the run of failures is over. */
  healthy(): void {
    this.failures = 0;
    this.failingSince = null;
  }

  /**
   * True when the destination is really delivering: connected and not in a run
   * of failures (a remote that accepts and at once closes is connected for a
   * moment each time, and still down).
   */
  get up(): boolean {
    return this.state === "connected" && this.failingSince === null;
  }

  toJSON() {
    return {
      state: this.state, since: this.since, up: this.up, last_error: this.lastError, last_error_at: this.lastErrorAt,
      last_close_code: this.lastCloseCode, last_close_reason: this.lastCloseReason,
      attempts: this.attempts, failures: this.failures, failing_since: this.failingSince === null ? null : new Date(this.failingSince).toISOString(),
      connects: this.connects, messages_out: this.messagesOut, bytes_out: this.bytesOut, messages_in: this.messagesIn, bytes_in: this.bytesIn, dropped: this.dropped,
      ...(this.resume ? { resume: this.resume() } : {}),
    };
  }
}

/** Reconnect timing: 1 s doubling to 10 s, each wait ±20 % so a fleet does not retry in step. */
export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 1000, maxMs: 10_000 };

/** The wait before attempt `n` (0-based) after failures, with jitter. */
export function backoffDelay(b: Backoff, failures: number): number {
  const raw = Math.min(b.maxMs, b.baseMs * 2 ** failures);
  return Math.round(raw * (0.8 + Math.random() * 0.4));
}

/**
 * Lets one log line through per `intervalMs` and counts the ones held back,
 * so a destination failing every second writes a line a minute, not sixty.
 */
export class LogRateLimit {
  private last = -Infinity;
  private held = 0;

  constructor(private readonly intervalMs: number) {}

  /** The number of lines held back since the last one let through, or null to hold this one back. */
  take(now = Date.now()): number | null {
    if (now - this.last < this.intervalMs) {
      this.held++;
      return null;
    }
    this.last = now;
    const held = this.held;
    this.held = 0;
    return held;
  }

  /** Lets the next line through at once (after a recovery, the next failure is news). */
  reset(): void {
    this.last = -Infinity;
    this.held = 0;
  }
}

/** A sleep that `wake()` can cut short (to stop or reconnect at once). */
export class Pause {
  private wakeUp: (() => void) | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeUp = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }

  wake(): void {
    if (this.timer) clearTimeout(this.timer);
    this.wakeUp?.();
    this.wakeUp = null;
  }
}
