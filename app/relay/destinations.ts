import type { Database } from "bun:sqlite";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import type { Hub } from "../hub/hub.ts";
import { WebSocketDestination, type Destination } from "./destination.ts";
import { Recorder } from "./recorder.ts";
import { publicRule, type DestinationRule } from "./rule.ts";
import { DEFAULT_BACKOFF, type Backoff } from "./status.ts";
import { WebhookDestination } from "./webhook.ts";
import { redactDestination, scrubDestination } from "./secret-url.ts";
import type { FollowDeps } from "../sinks/replay.ts";
import { CatchupRate, type CatchupLimits } from "./catchup-rate.ts";
import { DestinationCursors } from "./cursors.ts";

/** What the destinations need: the settings database, the hub, limits. */
export interface DestinationsOptions {
  db: Database;
  hub: Hub;
  logger: Logger;
  bufferLimit: () => number;
  recordMaxBytes: () => number;
  /** Silence (ms) after which a connected remote counts as down. */
  silenceMs?: () => number;
  backoff?: Backoff;
  /** Told when a destination starts (the hub's ticker, idle until then, checks it within a second). */
  started?: () => void;
  /** Store and forward (rules with `"resume": true`); without it such rules run as plain ones. */
  resume?: {
    /** Memory, last seqs and the log reader (the subscribers' catch-up). */
    follow: FollowDeps;
    /** The catch-up limits, shared by every destination. */
    limits: () => CatchupLimits;
    /** This box's node key, a secret kept in its data dir. */
    nodeKey: string;
  };
}

/**
 * The destination rules: kept in the settings store (so they come back after a
 * restart), each running as a connection out, each fed by a hub sink with the
 * messages of its stream.
 */
export class Destinations {
  private readonly running = new Map<string, Destination>();
  private readonly byStream = new Map<string, Destination[]>();
  /** Changes to one id, one after another (two POSTs of the same id at once must not both start). */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly cursors: DestinationCursors;
  private readonly rate: CatchupRate | null;

  constructor(private readonly opts: DestinationsOptions) {
    this.cursors = new DestinationCursors(opts.db);
    this.rate = opts.resume ? new CatchupRate(opts.resume.limits) : null;
  }

  /** Starts every stored rule. */
  load(): void {
    for (const row of this.opts.db.query<{ rule: string }, []>("SELECT rule FROM destinations ORDER BY id").all()) {
      // Rules stored before record_format existed recorded one message per line: they keep doing so.
      this.start({ record_format: "lines", resume: false, ...(JSON.parse(row.rule) as Omit<DestinationRule, "record_format" | "resume">) });
    }
  }

  /**
   * Adds or replaces a rule. A rule equal to the running one is left running
   * (re-posting from a boot script is harmless); a changed one is closed (1000)
   * and started anew.
   */
  upsert(rule: DestinationRule): Promise<Destination> {
    return this.serial(rule.id, () => this.upsertNow(rule));
  }

  private async upsertNow(rule: DestinationRule): Promise<Destination> {
    const existing = this.running.get(rule.id);
    if (existing && JSON.stringify(existing.rule) === JSON.stringify(rule)) return existing;
    this.opts.db.run("INSERT INTO destinations (id, rule) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET rule = excluded.rule, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [rule.id, JSON.stringify(rule)]);
    if (existing) await this.halt(existing);
    // The cursor belongs to a resume rule of one stream: anything else starts afresh next time.
    if (!rule.resume || (existing && existing.rule.stream !== rule.stream)) this.cursors.remove(rule.id);
    return this.start(rule);
  }

  /** Removes a rule and closes its connection; false when there was none. */
  remove(id: string): Promise<boolean> {
    return this.serial(id, () => this.removeNow(id));
  }

  /** Runs `fn` after every earlier change to the same id has finished. */
  private serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(id) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(id, tail);
    void tail.then(() => { if (this.locks.get(id) === tail) this.locks.delete(id); });
    return run;
  }

  private async removeNow(id: string): Promise<boolean> {
    this.opts.db.run("DELETE FROM destinations WHERE id = ?", [id]);
    const d = this.running.get(id);
    if (d) await this.halt(d);
    this.cursors.remove(id);
    return d !== undefined;
  }

  async removeAll(): Promise<void> {
    for (const id of [...this.running.keys()]) await this.remove(id);
    this.opts.db.run("DELETE FROM destinations");
    this.cursors.removeAll();
  }

  get(id: string): Destination | undefined {
    return this.running.get(id);
  }

  list(): Destination[] {
    return [...this.running.values()].sort((a, b) => a.rule.id.localeCompare(b.rule.id, "en", { numeric: true }));
  }

  /** The hub sink: hands a message to every destination of its stream. */
  deliver(m: Message): void {
    const ds = this.byStream.get(m.stream);
    if (ds) for (const d of ds) d.send(m);
  }

  /** Stops every connection (at shutdown); the rules stay stored. */
  async stop(): Promise<void> {
    await Promise.all([...this.running.values()].map((d) => this.halt(d)));
    this.cursors.flush();
  }

  private start(rule: DestinationRule): Destination {
    this.opts.started?.();
    let d: Destination | null = null;
    const onRecordError = (message: string) => {
      d?.status.fail(message);
      this.opts.logger.error("destination record file failed", { id: rule.id, error: message });
    };
    const deps = {
      hub: this.opts.hub,
      logger: this.opts.logger,
      backoff: this.opts.backoff ?? DEFAULT_BACKOFF,
      bufferLimit: this.opts.bufferLimit,
      silenceMs: this.opts.silenceMs,
      recorder: rule.file ? this.openRecorder(rule, onRecordError) : null,
      resume: this.opts.resume && this.rate ? { cursors: this.cursors, follow: this.opts.resume.follow, rate: this.rate, nodeKey: this.opts.resume.nodeKey } : undefined,
    };
    d = rule.kind === "webhook" ? new WebhookDestination(rule, deps) : new WebSocketDestination(rule, deps);
    this.running.set(rule.id, d);
    this.byStream.set(rule.stream, [...(this.byStream.get(rule.stream) ?? []), d]);
    this.opts.logger.info("destination added", { id: rule.id, stream: rule.stream, kind: rule.kind, destination: redactDestination(rule.destination, rule.kind) });
    return d;
  }

  /** Opens a rule's record file; a failure is logged and the destination runs without it. */
  private openRecorder(rule: DestinationRule, onError: (message: string) => void): Recorder | null {
    try {
      return new Recorder(rule.file, this.opts.recordMaxBytes, onError, rule.record_format);
    } catch (err) {
      this.opts.logger.error("destination record file cannot be opened; recording is off for it", { id: rule.id, file: rule.file, error: err });
      return null;
    }
  }

  private async halt(d: Destination): Promise<void> {
    this.running.delete(d.rule.id);
    const left = (this.byStream.get(d.rule.stream) ?? []).filter((x) => x !== d);
    if (left.length > 0) this.byStream.set(d.rule.stream, left);
    else this.byStream.delete(d.rule.stream);
    await d.stop();
  }
}

/** A destination as the API shows it: practable's rule fields (token redacted) and its status. */
export function destinationView(d: Destination) {
  const status = d.status.toJSON();
  return { ...publicRule(d.rule), status: { ...status, last_error: status.last_error && scrubDestination(status.last_error, d.rule) } };
}
