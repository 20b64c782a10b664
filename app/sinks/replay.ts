import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { LogReadError, logSeqBefore, readLogPage, type LogReaderDeps } from "./history.ts";
import type { RecentMessages } from "./recent.ts";

/** Where a follower starts: after a seq, after a time, or the last N messages; with none, at the live edge. */
export type ReplayStart = { afterSeq: number } | { since: number } | { last: number } | { live: true };

/** A subscriber's replay request: where to start and how each message is framed. */
export interface ReplayRequest {
  start: ReplayStart;
  /** json: one text frame `{"seq","ts","data"}` per message (with `"binary":true` and base64 data for bytes); raw: the payload as is. */
  envelope: "raw" | "json";
}

/** A missing run of seqs found while replaying: `from`..`to` are gone (retention, or never logged). */
export interface Gap {
  from: number;
  to: number;
  /** True when it lies before the start of the stream's history (retention removed it). */
  beforeHistory: boolean;
  reason: string;
}

/** Largest value of after_seq and last. */
const MAX_COUNT = Number.MAX_SAFE_INTEGER;

/** A bad replay parameter: the message says what was wrong and what is allowed. */
export class ReplayParamError extends Error {}

function whole(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > MAX_COUNT) throw new ReplayParamError(`${name}: ${JSON.stringify(text)} is not valid; allowed: a whole number from ${min} to ${MAX_COUNT}`);
  return n;
}

/** Parses a time (ISO 8601, UTC when it names no zone, or microseconds since the epoch) into µs. */
export function parseTime(name: string, text: string): number {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n <= MAX_COUNT) return n;
  } else if (/^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) {
    // A time without a zone is UTC, as everywhere in Switchyard (not the server's local time).
    const ms = Date.parse(/T[\d:.]+$/.test(text) ? `${text}Z` : text);
    if (!Number.isNaN(ms)) return ms * 1000;
  }
  throw new ReplayParamError(`${name}: ${JSON.stringify(text)} is not a time; allowed: an ISO 8601 time (2026-11-23T12:00:00Z) or microseconds since the epoch`);
}

/** The query parameters that ask for a replay or for framing (a plain subscriber has none of them). */
export const REPLAY_PARAMS = ["after_seq", "since", "last", "envelope"] as const;

/**
 * Reads `after_seq`, `since`, `last` and `envelope` from a query string (null
 * when none is present: a plain subscriber, unchanged). At most one of the
 * three starting points; `lastEventId` (SSE's Last-Event-ID header) wins over them.
 */
export function parseReplayRequest(query: URLSearchParams, opts: { lastEventId?: string | null; defaultEnvelope?: "raw" | "json" } = {}): ReplayRequest | null {
  if (!REPLAY_PARAMS.some((p) => query.has(p)) && !opts.lastEventId && !opts.defaultEnvelope) return null;
  for (const p of REPLAY_PARAMS) {
    if (query.getAll(p).length > 1) throw new ReplayParamError(`${p} is given more than once; give it once`);
  }
  const envelopeText = query.get("envelope");
  if (envelopeText !== null && envelopeText !== "json" && envelopeText !== "raw") throw new ReplayParamError(`envelope: ${JSON.stringify(envelopeText)} is not valid; allowed: json (one JSON text frame {"seq","ts","data"} per message) or raw (the payload as is, the default)`);
  const envelope = (envelopeText as "raw" | "json" | null) ?? opts.defaultEnvelope ?? "raw";
  const given = (["after_seq", "since", "last"] as const).filter((p) => query.has(p));
  if (given.length > 1) throw new ReplayParamError(`${given.join(" and ")} cannot be combined; give one starting point: after_seq (a seq), since (a time) or last (a count)`);
  let start: ReplayStart = { live: true };
  if (opts.lastEventId) {
    start = { afterSeq: whole("Last-Event-ID", opts.lastEventId.trim(), 0) };
  } else if (given[0] === "after_seq") {
    start = { afterSeq: whole("after_seq", query.get("after_seq")!, 0) };
  } else if (given[0] === "since") {
    start = { since: parseTime("since", query.get("since")!) };
  } else if (given[0] === "last") {
    start = { last: whole("last", query.get("last")!, 1) };
  }
  return { start, envelope };
}

/** A message as one JSON envelope: `{"seq","ts","data"}`, bytes as base64 with `"binary":true`. */
export function envelopeJson(m: Message): string {
  return typeof m.data === "string"
    ? `{"seq":${m.seq},"ts":${m.ts},"data":${JSON.stringify(m.data)}}`
    : `{"seq":${m.seq},"ts":${m.ts},"data":"${Buffer.from(m.data).toString("base64")}","binary":true}`;
}

/** A gap as a JSON notice (no "seq" key, so it is never taken for a message). */
export function gapJson(g: Gap): string {
  return JSON.stringify({ event: "gap", from: g.from, to: g.to, before_history: g.beforeHistory, reason: g.reason });
}

/** Where a follower writes: a websocket or an SSE response. */
export interface FollowTarget {
  /** Writes one message. */
  send(m: Message): void;
  /** Reports a gap; returns false to end the follow (the target then closed itself). */
  gap(g: Gap): boolean;
  /** Bytes written but not yet taken by the client. */
  buffered(): number;
  /** Ends the follow: the log could not be read, or the start is invalid. */
  fail(reason: string): void;
}

/** What followers need: the stream's memory, its last seq, whether it is logged, and the log. */
export interface FollowDeps {
  recent: RecentMessages;
  /** The last delivered seq of a stream (live, retired, or the spool's after a restart). */
  lastSeq: (stream: string) => number;
  /** False for streams the log leaves out (setting log_exclude): only memory can replay them. */
  logs: (stream: string) => boolean;
  log: LogReaderDeps;
  /** Bytes a follower may have waiting in its socket before it pauses (backpressure_limit_bytes). */
  limitBytes: () => number;
  logger: Logger;
  /** Counts a message handed to a resuming subscriber (the hub's messages_out); relays' backlogs count in their own status. */
  sent?: (m: Message) => void;
}

/** Most bytes of live messages a catching-up follower holds for the hand-off; older ones are read again from memory or the log. */
export const HANDOFF_BUFFER_BYTES = 4 * 1024 * 1024;
/** Messages sent from memory per step. */
const MEMORY_BATCH = 1000;
/** Reads of one log page before a follow fails (close 1011, event: error). */
const LOG_READ_ATTEMPTS = 3;
/** How often a paused follower looks again without a drain event. */
const DRAIN_POLL_MS = 250;

/**
 * One subscriber that resumes: replays what it missed from memory or the log,
 * then follows live, with no gap and no duplicate. Live messages that arrive
 * while it catches up are kept (bounded) for the hand-off; when its client falls
 * behind live it goes back to catching up from `lastSent` instead of dropping.
 */
export class Follower {
  /** The highest seq written to the client (or skipped as not wanted). */
  lastSent = 0;
  private live = false;
  private stopped = false;
  private running = false;
  private buffer: Message[] = [];
  private bufferBytes = 0;
  private wake: (() => void) | null = null;
  private minTs = -Infinity;
  private readonly startGapCheck: boolean;

  constructor(readonly stream: string, private readonly start: ReplayStart, private readonly target: FollowTarget, private readonly deps: FollowDeps, private readonly client: string) {
    this.startGapCheck = "afterSeq" in start;
  }

  /** Begins (called once registered, so live messages are already being kept). */
  begin(): void {
    const s = this.start;
    const last = this.deps.lastSeq(this.stream);
    if ("afterSeq" in s) this.lastSent = s.afterSeq;
    else if ("last" in s) this.lastSent = Math.max(0, last - s.last);
    else if ("live" in s) this.lastSent = last;
    void this.run();
  }

  /** A live message of the stream (hub delivery sink). */
  offer(m: Message): void {
    if (this.stopped || m.seq <= this.lastSent) return;
    if (this.live) {
      if (m.seq === this.lastSent + 1 && this.target.buffered() < this.deps.limitBytes()) {
        this.write(m);
        return;
      }
      // Behind (or a seq went missing): catch up from memory or the log from lastSent.
      this.live = false;
      this.keep(m);
      void this.run();
      return;
    }
    this.keep(m);
  }

  /** The client took buffered data: go on. */
  drained(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Stops for good (the client left). */
  stop(): void {
    this.stopped = true;
    this.buffer = [];
    this.drained();
  }

  get isLive(): boolean {
    return this.live;
  }

  private keep(m: Message): void {
    this.buffer.push(m);
    this.bufferBytes += m.size;
    while (this.bufferBytes > HANDOFF_BUFFER_BYTES && this.buffer.length > 1) this.bufferBytes -= this.buffer.shift()!.size;
  }

  private write(m: Message): void {
    this.lastSent = m.seq;
    if (m.ts > this.minTs) this.target.send(m);
  }

  private full(): boolean {
    return this.target.buffered() >= this.deps.limitBytes();
  }

  private async waitDrain(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      setTimeout(() => { if (this.wake === resolve) this.drained(); }, DRAIN_POLL_MS);
    });
  }

  /** Reports the seqs lastSent+1 .. next-1 as missing and moves past them; false when the target ended the follow. */
  private skipTo(next: number, beforeHistory: boolean, why: string): boolean {
    if (next <= this.lastSent + 1) return true;
    const gap: Gap = { from: this.lastSent + 1, to: next - 1, beforeHistory, reason: why };
    this.lastSent = next - 1;
    return this.target.gap(gap);
  }

  private async resolveSince(since: number): Promise<void> {
    this.minTs = since;
    const inMemory = this.deps.recent.seqBefore(this.stream, since);
    if (inMemory !== null) {
      this.lastSent = inMemory;
      return;
    }
    const atQuery = this.deps.lastSeq(this.stream);
    const fromLog = this.deps.logs(this.stream) ? await logSeqBefore(this.deps.log, this.stream, since, { client: this.client, stopped: () => this.stopped }) : null;
    // Nothing in the log after `since`: what comes is newer than what was delivered when the query began.
    this.lastSent = fromLog ?? atQuery;
  }

  /** Catches up until it can hand off to live delivery. */
  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      if ("since" in this.start && this.lastSent === 0 && this.minTs === -Infinity) await this.resolveSince(this.start.since);
      let first = true;
      while (!this.stopped) {
        if (this.full()) {
          await this.waitDrain();
          continue;
        }
        while (this.buffer.length > 0 && this.buffer[0]!.seq <= this.lastSent) this.bufferBytes -= this.buffer.shift()!.size;
        // The kept live messages continue where the client is: send them, then go live (synchronously: nothing is delivered in between).
        if (this.buffer.length > 0 && this.buffer[0]!.seq === this.lastSent + 1) {
          while (this.buffer.length > 0 && !this.full()) {
            const m = this.buffer.shift()!;
            this.bufferBytes -= m.size;
            this.write(m);
          }
          if (this.buffer.length === 0) return this.goLive();
          continue;
        }
        if (this.buffer.length === 0 && this.lastSent >= this.deps.lastSeq(this.stream)) return this.goLive();
        const fromMemory = this.deps.recent.after(this.stream, this.lastSent, MEMORY_BATCH);
        if (fromMemory && fromMemory.length > 0) {
          first = false;
          for (const m of fromMemory) {
            if (this.full()) break;
            if (m.seq > this.lastSent) this.write(m);
          }
          continue;
        }
        // What follows lastSent is neither kept nor in memory: the log has it (or nobody has).
        const page = this.deps.logs(this.stream) ? await this.readPage() : [];
        if (this.stopped) return;
        const next = page[0]?.seq ?? this.buffer[0]?.seq ?? this.deps.recent.oldest(this.stream)?.seq ?? this.deps.lastSeq(this.stream) + 1;
        if (next > this.lastSent + 1) {
          const beforeHistory = first;
          const why = !this.deps.logs(this.stream)
            ? `the stream is excluded from the log (setting log_exclude) and memory no longer holds seq ${this.lastSent + 1}..${next - 1}`
            : beforeHistory ? `seq ${this.lastSent + 1}..${next - 1} are before the start of history: the oldest message kept is seq ${next}`
            : `seq ${this.lastSent + 1}..${next - 1} are in neither memory nor the log`;
          const report = this.startGapCheck || !first;
          if (report && !this.skipTo(next, beforeHistory, why)) return this.stop();
          if (!report) this.lastSent = next - 1;
        }
        first = false;
        for (const m of page) {
          if (this.stopped) return;
          if (m.seq <= this.lastSent) continue;
          if (this.full()) await this.waitDrain();
          if (this.stopped) return;
          if (m.seq > this.lastSent) this.write(m);
        }
      }
    } catch (err) {
      if (this.stopped) return;
      this.stopped = true;
      const reason = err instanceof LogReadError ? err.message : `replay failed: ${(err as Error).message}`;
      if (!(err instanceof LogReadError)) this.deps.logger.error("replay failed", { stream: this.stream, error: err });
      this.target.fail(reason);
    } finally {
      this.running = false;
    }
  }

  /** The next log page; a failed read (a query process killed or restarted, say) is tried again twice, a second apart, before the follow fails. */
  private async readPage(): Promise<Message[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await readLogPage(this.deps.log, this.stream, this.lastSent, undefined, { client: this.client, stopped: () => this.stopped });
      } catch (err) {
        if (!(err instanceof LogReadError) || attempt >= LOG_READ_ATTEMPTS || this.stopped) throw err;
        this.deps.logger.warn("replay: reading the log failed, trying again", { stream: this.stream, attempt, error: err.message });
        await Bun.sleep(1000);
      }
    }
  }

  private goLive(): void {
    this.live = true;
    this.buffer = [];
    this.bufferBytes = 0;
  }
}

/**
 * The followers of every stream: a hub delivery sink hands each delivered
 * message to the followers of its stream (a map lookup for other streams).
 */
export class Followers {
  private readonly byStream = new Map<string, Set<Follower>>();

  constructor(readonly deps: FollowDeps) {}

  /** Hub delivery sink. */
  deliver(m: Message): void {
    const set = this.byStream.get(m.stream);
    if (set) for (const f of set) f.offer(m);
  }

  /** Starts following `stream` from `start` into `target`; `client` shares query slots fairly. */
  follow(stream: string, start: ReplayStart, target: FollowTarget, client: string): Follower {
    const sent = this.deps.sent;
    const counted: FollowTarget = sent
      ? { send: (m) => { target.send(m); sent(m); }, gap: (g) => target.gap(g), buffered: () => target.buffered(), fail: (r) => target.fail(r) }
      : target;
    const f = new Follower(stream, start, counted, this.deps, `replay:${client}`);
    let set = this.byStream.get(stream);
    if (!set) this.byStream.set(stream, (set = new Set()));
    set.add(f);
    f.begin();
    return f;
  }

  /** Stops a follower and forgets it. */
  unfollow(f: Follower): void {
    f.stop();
    const set = this.byStream.get(f.stream);
    if (set?.delete(f) && set.size === 0) this.byStream.delete(f.stream);
  }

  /** The streams followed now. */
  streams(): string[] {
    return [...this.byStream.keys()];
  }

  /** Followers now, across streams. */
  get count(): number {
    let n = 0;
    for (const s of this.byStream.values()) n += s.size;
    return n;
  }

  /**
   * Why a start cannot be served, before anything is sent: an after_seq ahead
   * of the stream's last seq (the client holds seqs this box never gave, e.g.
   * of another data dir). Null when it can.
   */
  startProblem(stream: string, start: ReplayStart): string | null {
    if (!("afterSeq" in start)) return null;
    const last = this.deps.lastSeq(stream);
    return start.afterSeq > last ? `after_seq ${start.afterSeq} is ahead of stream ${JSON.stringify(stream)}, whose last seq is ${last}; allowed: 0 to ${last} (a seq this server gave)` : null;
  }
}
