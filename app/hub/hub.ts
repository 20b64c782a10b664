import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import { payloadBytes, type Message, type Origin, type Payload } from "../core/message.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import type { Settings } from "../config/settings.ts";
import type { Connection } from "./connection.ts";
import type { FanOut } from "./fanout.ts";
import { StreamState, type StreamCounters } from "./stream-state.ts";

/** Why a publish was refused; `code` is stable for counting, `message` for people. */
export class PublishError extends Error {
  override name = "PublishError";
  constructor(readonly code: "bad_stream" | "too_large" | "read_only" | "log_unavailable", message: string) {
    super(message);
  }
}

/** A stream appeared or disappeared. */
export interface StreamEvent {
  event: "stream_added" | "stream_removed";
  stream: string;
  ts: string;
}

/** The system stream that carries StreamEvents to websocket clients. */
export const STREAMS_EVENTS_STREAM = "$streams";

/** Most removed streams whose last seq is remembered in memory. */
const MAX_RETIRED = 100_000;

/** Most messages waiting for the end of the turn before they are delivered at once. */
const MAX_OUTBOX = 4096;

/** Largest websocket frame header, added to payload size when bounding buffered bytes. */
const FRAME_OVERHEAD = 14;

/** What the hub needs from its surroundings. */
export interface HubOptions {
  settings: () => Settings;
  clock: Clock;
  logger: Logger;
  /** Last seq of a stream seen before this process (from the durable log); 0 when none. */
  lastSeq?: (stream: string) => number;
  /** The durable log, asked on publish and after each turn's write (see `log_deliver_unlogged`). */
  log?: HubLog;
}

/** What the hub asks of the durable log. */
export interface HubLog {
  /** Why the log cannot write now (null: it can). */
  failure(): string | null;
  /** Whether a stream's messages go to the log (not excluded by log_exclude). */
  logs(stream: string): boolean;
  /** The messages whose write failed since the last call, or null when none did. */
  takeLost(): ((m: Message) => boolean) | null;
}

/** Hub-wide counters for /metrics. */
export interface HubTotals {
  connectionsOpened: number;
  connectionsRefused: Record<string, number>;
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
  slowDisconnects: number;
  sinkErrors: number;
  /** Messages slow subscribers lost, counted when they caught up or left (never goes down). */
  droppedSettled: number;
  /** Messages refused (not stored, not delivered) because the log could not write them. */
  refusedUnlogged: number;
  /** Messages delivered although the log could not write them (setting log_deliver_unlogged). */
  deliveredUnlogged: number;
}

type MessageSink = (m: Message) => void;
type EventListener = (e: StreamEvent) => void;

/**
 * The hub: the streams registry, `publish` (the one path every message takes),
 * fan-out with a backpressure policy, lifecycle events and stats.
 *
 * Delivery: `publish` records a message (sinks: the log's spool, the recent
 * ring) at once; fan-out to subscribers and destinations happens at the end of
 * the event-loop turn, after the spool has written the turn's batch, so nothing
 * is seen that the log does not have.
 *
 * Backpressure: fan-out uses native topics; the hub watches how many bytes it has
 * handed to them since its last check and, once that passes a quarter of the
 * limit while any publish reported backpressure, checks the buffered bytes of the
 * subscribers of the streams it touched. A subscriber over the limit is taken off
 * its topic and its misses counted (policy `drop`) or closed with 1013 (policy
 * `disconnect`). The native per-socket limit is set above the policy limit plus a
 * check interval, so no message is dropped uncounted.
 */
export class Hub {
  private readonly streams = new Map<string, StreamState>();
  /** Last seq of streams that were removed, so a stream that comes back keeps counting up. */
  private readonly retiredSeq = new Map<string, number>();
  /** Counters of retired streams, so they carry on (never reset) when the stream comes back; bounded as retiredSeq. */
  private readonly retiredCounters = new Map<string, StreamCounters>();
  private readonly sinks: MessageSink[] = [];
  private readonly deliverySinks: MessageSink[] = [];
  private readonly beforeDelivery: (() => void)[] = [];
  private outbox: Message[] = [];
  private outboxFrom: (Connection | undefined)[] = [];
  private deliveryScheduled = false;
  private readonly eventListeners: EventListener[] = [];
  private fanout: FanOut | null = null;
  private bytesSinceCheck = 0;
  private pressure = false;
  private connectionCount = 0;
  private readonly systemConnections = new Set<Connection>();
  /** Feed rules: a client of the key stream also receives every listed stream. */
  private readonly feeds = new Map<string, string[]>();
  /** How many clients of other streams read a stream as a feed. */
  private readonly feedReaders = new Map<string, number>();
  readonly totals: HubTotals = { connectionsOpened: 0, connectionsRefused: {}, messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0, slowDisconnects: 0, sinkErrors: 0, droppedSettled: 0, refusedUnlogged: 0, deliveredUnlogged: 0 };

  constructor(private readonly opts: HubOptions) {}

  /** Connects the hub to its fan-out (done once the server is listening). */
  attachFanOut(fanout: FanOut): void {
    this.fanout = fanout;
  }

  /** Bytes a subscriber may have buffered before the policy applies. */
  get backpressureLimit(): number {
    return this.opts.settings().backpressure_limit_bytes;
  }

  /** How many bytes may be fanned out between two checks of the subscribers' buffers. */
  get checkEveryBytes(): number {
    return Math.max(16 * 1024, Math.floor(this.backpressureLimit / 4));
  }

  /** The per-socket limit to give Bun: above anything the policy lets through between two checks. */
  nativeBackpressureLimit(maxMessageBytes: number): number {
    return this.backpressureLimit + this.checkEveryBytes + maxMessageBytes + 64 * 1024;
  }

  /** Messages lost to backpressure since start, hub-wide: settled plus those of subscribers lagging now. Never goes down. */
  droppedTotal(): number {
    let live = 0;
    for (const s of this.streams.values()) live += s.dropped - s.droppedSettled;
    return this.totals.droppedSettled + live;
  }

  /** Every open websocket connection, including those on system streams. */
  allConnections(): Connection[] {
    const out = [...this.systemConnections];
    for (const s of this.streams.values()) out.push(...s.connections);
    return out;
  }

  /** Open websocket connections. */
  get connections(): number {
    return this.connectionCount;
  }

  /** Registers a sink that sees every accepted message, in order, as it is accepted (log, recent ring, alerts). It must not block. */
  onMessage(sink: MessageSink): void {
    this.sinks.push(sink);
  }

  /** Registers a sink that sees every message when it is delivered: after the turn's log write (destinations). */
  onDelivery(sink: MessageSink): void {
    this.deliverySinks.push(sink);
  }

  /** Registers a hook run at the end of each turn before delivery (the log writes its batch here). */
  onBeforeDelivery(hook: () => void): void {
    this.beforeDelivery.push(hook);
  }

  /** Registers a listener for streams appearing and disappearing. */
  onStreamEvent(listener: EventListener): () => void {
    this.eventListeners.push(listener);
    return () => {
      const i = this.eventListeners.indexOf(listener);
      if (i >= 0) this.eventListeners.splice(i, 1);
    };
  }

  /** A stream by name, if it is live. */
  stream(name: string): StreamState | undefined {
    return this.streams.get(name);
  }

  /** All live streams, by name. */
  listStreams(): StreamState[] {
    return [...this.streams.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Accepts one message: checks it, stamps it with receive time and the stream's
   * next seq, hands it to the recording sinks (the log) now, and queues it for
   * delivery at the end of the turn: to every subscriber (but `from`, when a
   * websocket client sent it) and the delivery sinks. Never waits on a subscriber
   * or the disk. Throws PublishError for a bad stream name, an oversized message,
   * or (unless log_deliver_unlogged) a logged stream while the log cannot write.
   */
  publish(stream: string, data: Payload, origin: Origin, from?: Connection): Message {
    const size = payloadBytes(data);
    const settings = this.opts.settings();
    const limit = settings.max_message_bytes;
    if (size > limit) throw new PublishError("too_large", `message of ${size} bytes is larger than the limit of ${limit} bytes (setting max_message_bytes)`);
    const log = this.opts.log;
    if (log) {
      const failure = log.failure();
      if (failure !== null && !settings.log_deliver_unlogged && log.logs(stream)) {
        this.totals.refusedUnlogged++;
        throw new PublishError("log_unavailable", `not stored and not delivered: the log cannot write (${failure}); try again later`);
      }
    }
    const s = this.streams.get(stream) ?? this.openStream(stream);
    const now = this.opts.clock.nowMicros();
    const msg: Message = { stream, ts: now, seq: ++s.seq, origin, data, size };
    s.messagesIn++;
    s.bytesIn += size;
    s.lastMessageAt = Math.floor(now / 1000);
    s.idleSince = 0;
    s.rateIn.add();
    this.totals.messagesIn++;
    this.totals.bytesIn += size;
    if (from) from.published++;
    else if (origin !== s.lastOrigin || now - s.lastOriginAt > 1_000_000) {
      // Publishers are counted over a minute: refreshing the same origin once a second is enough.
      s.otherPublishers.set(origin, now / 1000);
      s.lastOrigin = origin;
      s.lastOriginAt = now;
    }

    this.runSinks(this.sinks, msg);
    // Delivery (subscribers, destinations) waits for the end of the turn, after the log has written it:
    // whatever anyone has seen is in the log, also after kill -9.
    this.outbox.push(msg);
    this.outboxFrom.push(from);
    // A flood can keep the event loop from reaching the end of its turn: deliver
    // (and so let the log write) every few thousand messages, so memory stays bounded.
    if (this.outbox.length >= MAX_OUTBOX) this.deliverAll();
    else if (!this.deliveryScheduled) {
      this.deliveryScheduled = true;
      setImmediate(this.deliverAll);
    }
    return msg;
  }

  /** Runs the before-delivery hooks (the log's write), then fans out this turn's messages in order. */
  private readonly deliverAll = (): void => {
    this.deliveryScheduled = false;
    const messages = this.outbox;
    const froms = this.outboxFrom;
    if (messages.length === 0) return;
    this.outbox = [];
    this.outboxFrom = [];
    for (const hook of this.beforeDelivery) {
      try {
        hook();
      } catch (err) {
        this.opts.logger.error("before-delivery hook failed", { error: err });
      }
    }
    const lost = this.opts.log?.takeLost() ?? null;
    for (let i = 0; i < messages.length; i++) {
      if (lost !== null && lost(messages[i]!) && !this.deliverUnlogged(messages[i]!, froms[i])) continue;
      this.deliver(messages[i]!, froms[i]);
    }
  };

  /**
   * A message the log could not write: delivered anyway (counted) under
   * log_deliver_unlogged, else not delivered, and a websocket publisher is
   * closed with 1013 saying so (it may send it again: nothing of it was kept).
   */
  private deliverUnlogged(msg: Message, from: Connection | undefined): boolean {
    if (this.opts.settings().log_deliver_unlogged) {
      this.totals.deliveredUnlogged++;
      return true;
    }
    this.totals.refusedUnlogged++;
    if (from?.ws && !from.closing) {
      from.closing = true;
      const text = `message ${msg.seq} not stored and not delivered: the log cannot write; try again later`;
      from.ws.close(1013, text);
    }
    return false;
  }

  private deliver(msg: Message, from: Connection | undefined): void {
    const s = this.streams.get(msg.stream);
    if (s) s.deliveredSeq = msg.seq;
    if (from) from.ownDelivered++;
    if (s && this.fanout) {
      const sender = from && from.ws?.readyState === 1 ? from : undefined;
      const feedReaders = this.feedReaders.size > 0 ? this.feedReaders.get(msg.stream) ?? 0 : 0;
      const receivers = s.readers + feedReaders - (sender?.subscribed ? 1 : 0);
      if (receivers > 0) {
        const size = msg.size;
        const status = this.fanout.publish(msg.stream, msg.data, sender);
        s.messagesOut += receivers;
        s.bytesOut += receivers * size;
        this.totals.messagesOut += receivers;
        this.totals.bytesOut += receivers * size;
        s.dirty = true;
        if (feedReaders > 0) for (const [name] of this.feeds) { const r = this.streams.get(name); if (r) r.dirty = true; }
        this.bytesSinceCheck += size + FRAME_OVERHEAD;
        if (status <= 0) this.pressure = true;
        if (status === 0) this.checkBackpressure(true);
        else if (this.pressure && this.bytesSinceCheck >= this.checkEveryBytes) this.checkBackpressure(false);
      }
    }
    this.runSinks(this.deliverySinks, msg);
  }

  private runSinks(sinks: MessageSink[], msg: Message): void {
    for (const sink of sinks) {
      try {
        sink(msg);
      } catch (err) {
        // A failing sink is a bug; it must not cost the source its message or the other sinks theirs.
        this.totals.sinkErrors++;
        if (this.totals.sinkErrors <= 10 || this.totals.sinkErrors % 1000 === 0) this.opts.logger.error("message sink failed", { stream: msg.stream, error: err, count: this.totals.sinkErrors });
      }
    }
  }

  /**
   * Checks the buffered bytes of the subscribers of every stream that had traffic
   * since the last check, and applies the backpressure policy to those over the
   * limit. `dropped` is true when the native layer reported a drop just now.
   */
  checkBackpressure(dropped = false): void {
    const limit = this.backpressureLimit;
    const policy = this.opts.settings().backpressure_policy;
    let still = false;
    for (const s of this.streams.values()) {
      if (!s.dirty) continue;
      s.dirty = false;
      for (const c of s.connections) {
        if (!c.subscribed || !c.ws) continue;
        const buffered = c.ws.getBufferedAmount();
        if (buffered <= limit) {
          if (buffered > 0) still = true;
          continue;
        }
        if (dropped) this.opts.logger.warn("native layer dropped a message before the backpressure check", { stream: s.name, origin: c.origin, buffered });
        if (policy === "disconnect") this.disconnectSlow(s, c, buffered, limit);
        else this.holdOff(s, c);
      }
    }
    this.bytesSinceCheck = 0;
    this.pressure = still;
  }

  /** Called when a subscriber's socket has written out buffered data. */
  drained(c: Connection): void {
    if (!c.lag || !c.ws || c.closing) return;
    if (c.ws.getBufferedAmount() > this.backpressureLimit / 2) return;
    const s = this.streams.get(c.stream);
    if (!s) return;
    const missed = this.missedWhileLagging(s, c);
    c.dropped += missed;
    s.droppedSettled += missed;
    this.totals.droppedSettled += missed;
    c.lag = undefined;
    this.subscribe(s, c);
    this.opts.logger.info("slow subscriber caught up", { stream: s.name, origin: c.origin, dropped: missed });
  }

  /** Registers an accepted websocket connection on its stream (or on the system stream `$streams`). */
  join(c: Connection): void {
    if (c.stream === STREAMS_EVENTS_STREAM) {
      this.systemConnections.add(c);
      this.connectionCount++;
      this.totals.connectionsOpened++;
      this.fanout?.subscribe(c, STREAMS_EVENTS_STREAM);
      c.subscribed = true;
      return;
    }
    const s = this.streams.get(c.stream) ?? this.openStream(c.stream);
    s.connections.add(c);
    s.idleSince = 0;
    this.connectionCount++;
    this.totals.connectionsOpened++;
    if (c.grant.read) this.subscribe(s, c);
  }

  /** Removes a closed websocket connection from its stream. */
  leave(c: Connection): void {
    for (const t of c.timers) clearTimeout(t);
    if (this.systemConnections.delete(c)) {
      this.connectionCount--;
      return;
    }
    const s = this.streams.get(c.stream);
    if (!s || !s.connections.delete(c)) return;
    this.connectionCount--;
    this.unsubscribe(s, c);
    if (c.lag) {
      const missed = this.missedWhileLagging(s, c);
      s.droppedSettled += missed;
      this.totals.droppedSettled += missed;
      c.lag = undefined;
    }
    if (c.published > 0) s.wsPublishers--;
    if (s.connections.size === 0) s.idleSince = this.opts.clock.nowMillis();
  }

  /** Counts a websocket connection refused at or right after the upgrade, by reason code. */
  countRefused(reason: string): void {
    this.totals.connectionsRefused[reason] = (this.totals.connectionsRefused[reason] ?? 0) + 1;
  }

  /** Marks a websocket connection as a publisher of its stream (first message). */
  notePublisher(c: Connection): void {
    const s = this.streams.get(c.stream);
    if (s) s.wsPublishers++;
  }

  /**
   * Once a second: closes the rate windows, forgets publishers silent for a
   * minute, and removes streams idle for longer than the linger setting.
   */
  tick(): void {
    const now = this.opts.clock.nowMillis();
    const linger = this.opts.settings().stream_linger_seconds * 1000;
    for (const s of [...this.streams.values()]) {
      s.rateIn.tick();
      for (const [origin, at] of s.otherPublishers) if (now - at > 60_000) s.otherPublishers.delete(origin);
      if (s.connections.size > 0) continue;
      const quietSince = Math.max(s.idleSince, s.lastMessageAt);
      if (s.idleSince === 0) s.idleSince = now;
      else if (now - quietSince >= linger) this.closeStream(s);
    }
    // A lagging subscriber whose socket drained before it was held off gets no drain event: look again.
    // And the policy is read now, not when it began lagging: switched to `disconnect`, a lagging subscriber is closed.
    const disconnect = this.opts.settings().backpressure_policy === "disconnect";
    for (const s of this.streams.values()) {
      for (const c of s.connections) {
        if (!c.lag) continue;
        this.drained(c);
        if (c.lag && disconnect && !c.closing && c.ws) this.disconnectSlow(s, c, c.ws.getBufferedAmount(), this.backpressureLimit);
      }
    }
  }

  /**
   * Sets the feed rule of `stream`: its clients also receive every stream in
   * `feeds` (practable's /api/streams rules). Applies to connected clients at once.
   */
  setFeeds(stream: string, feeds: string[]): void {
    const s = this.streams.get(stream);
    const live = s ? [...s.connections].filter((c) => c.subscribed) : [];
    for (const c of live) this.unsubscribe(s!, c);
    if (feeds.length > 0) this.feeds.set(stream, [...new Set(feeds)].filter((f) => f !== stream));
    else this.feeds.delete(stream);
    for (const c of live) this.subscribe(s!, c);
  }

  /** The feeds of a stream ([] when it has no rule). */
  feedsOf(stream: string): string[] {
    return this.feeds.get(stream) ?? [];
  }

  /** Messages a lagging subscriber missed: on its stream (less its own) and on its feeds. */
  private missedWhileLagging(s: StreamState, c: Connection): number {
    if (!c.lag) return 0;
    let missed = s.deliveredSeq - c.lag.seq - (c.ownDelivered - c.lag.own);
    for (const [feed, seq] of c.lag.feeds) missed += this.currentSeq(feed) - seq;
    return missed;
  }

  /** The last delivered seq of a stream (live or retired). */
  private currentSeq(stream: string): number {
    return this.streams.get(stream)?.deliveredSeq ?? this.retiredSeq.get(stream) ?? 0;
  }

  private subscribe(s: StreamState, c: Connection): void {
    if (c.subscribed) return;
    this.fanout?.subscribe(c, s.name);
    for (const f of this.feeds.get(s.name) ?? []) {
      this.fanout?.subscribe(c, f);
      this.feedReaders.set(f, (this.feedReaders.get(f) ?? 0) + 1);
    }
    c.subscribed = true;
    s.readers++;
  }

  private unsubscribe(s: StreamState, c: Connection): void {
    if (!c.subscribed) return;
    this.fanout?.unsubscribe(c, s.name);
    for (const f of this.feeds.get(s.name) ?? []) {
      this.fanout?.unsubscribe(c, f);
      const n = (this.feedReaders.get(f) ?? 1) - 1;
      if (n > 0) this.feedReaders.set(f, n);
      else this.feedReaders.delete(f);
    }
    c.subscribed = false;
    s.readers--;
  }

  private holdOff(s: StreamState, c: Connection): void {
    this.unsubscribe(s, c);
    c.lag = { seq: s.deliveredSeq, own: c.ownDelivered, feeds: (this.feeds.get(s.name) ?? []).map((f) => [f, this.currentSeq(f)]) };
    this.opts.logger.warn("slow subscriber: dropping its messages until it catches up", { stream: s.name, origin: c.origin, limit: this.backpressureLimit });
  }

  private disconnectSlow(s: StreamState, c: Connection, buffered: number, limit: number): void {
    this.unsubscribe(s, c);
    s.slowDisconnects++;
    this.totals.slowDisconnects++;
    c.closing = true;
    c.ws!.close(1013, `too slow: ${buffered} bytes waiting, limit ${limit} (backpressure policy disconnect)`);
    // The close frame waits behind the unsent data; a reader that never reads is cut off.
    c.timers.push(setTimeout(() => c.ws?.readyState === 1 && c.ws.terminate(), 5000));
    this.opts.logger.warn("slow subscriber disconnected", { stream: s.name, origin: c.origin, buffered, limit });
  }

  private openStream(name: string): StreamState {
    const problem = streamNameProblem(name);
    if (problem) throw new PublishError("bad_stream", problem);
    const last = this.retiredSeq.get(name) ?? this.opts.lastSeq?.(name) ?? 0;
    this.retiredSeq.delete(name);
    const s = new StreamState(name, this.opts.clock.nowMillis(), last, this.retiredCounters.get(name));
    this.retiredCounters.delete(name);
    this.streams.set(name, s);
    this.emit({ event: "stream_added", stream: name, ts: new Date().toISOString() });
    return s;
  }

  private closeStream(s: StreamState): void {
    this.streams.delete(s.name);
    this.retiredSeq.set(s.name, s.seq);
    this.retiredCounters.set(s.name, s.counters());
    // Bounded: a sender inventing stream names must not grow it without end (the log keeps seqs across restarts).
    if (this.retiredSeq.size > MAX_RETIRED) this.retiredSeq.delete(this.retiredSeq.keys().next().value!);
    if (this.retiredCounters.size > MAX_RETIRED) this.retiredCounters.delete(this.retiredCounters.keys().next().value!);
    this.emit({ event: "stream_removed", stream: s.name, ts: new Date().toISOString() });
  }

  private emit(e: StreamEvent): void {
    this.opts.logger.debug(e.event, { stream: e.stream });
    this.fanout?.publish(STREAMS_EVENTS_STREAM, JSON.stringify(e));
    for (const l of this.eventListeners) l(e);
  }
}
