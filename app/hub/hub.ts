import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import { payloadBytes, type Message, type Origin, type Payload } from "../core/message.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import type { Settings } from "../config/settings.ts";
import { Backpressure } from "./backpressure.ts";
import type { Connection } from "./connection.ts";
import type { FanOut } from "./fanout.ts";
import { Outbox } from "./outbox.ts";
import { STREAMS_EVENTS_STREAM, type StreamEvent } from "./stream-events.ts";
import { StreamState, type StreamCounters } from "./stream-state.ts";
import { Subscriptions } from "./subscriptions.ts";
import { emptyTotals, type HubTotals } from "./totals.ts";

/** Why a publish was refused; `code` is stable for counting, `message` for people. */
export class PublishError extends Error {
  override name = "PublishError";
  constructor(readonly code: "bad_stream" | "too_large" | "read_only" | "log_unavailable", message: string) {
    super(message);
  }
}

/** Most removed streams whose last seq is remembered in memory. */
const MAX_RETIRED = 100_000;

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
  /** Whether a message of this stream and origin goes to the log (not excluded by log_exclude, not another cluster node's). */
  logs(stream: string, origin?: Origin): boolean;
  /** The messages whose write failed since the last call, or null when none did. */
  takeLost(): ((m: Message) => boolean) | null;
}

type MessageSink = (m: Message) => void;
type EventListener = (e: StreamEvent) => void;

/**
 * The hub: the streams registry, `publish` (the one path every message takes),
 * turn-batched fan-out, connections joining and leaving, lifecycle events and
 * stats. Who reads what is `Subscriptions` (with feed rules); what happens to a
 * subscriber that cannot keep up is `Backpressure`; the turn's batch is `Outbox`.
 *
 * Delivery: `publish` hands a message to the sinks that see it at once (the
 * log's spool, alerts) and queues it; fan-out to subscribers and the delivery
 * sinks (destinations, the recent ring) happens at the end of the event-loop
 * turn, after the spool has written the turn's batch, so nothing is seen that
 * the log does not have.
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
  private readonly eventListeners: EventListener[] = [];
  private fanout: FanOut | null = null;
  private connectionCount = 0;
  private eventStreamCount = 0;
  private readonly systemConnections = new Set<Connection>();
  private readonly subscriptions = new Subscriptions(() => this.fanout);
  private readonly outbox = new Outbox((messages, froms) => this.deliverAll(messages, froms));
  readonly totals: HubTotals = emptyTotals();
  /** What happens to subscribers that cannot keep up. */
  readonly backpressure: Backpressure;

  constructor(private readonly opts: HubOptions) {
    this.backpressure = new Backpressure({
      settings: opts.settings,
      logger: opts.logger,
      totals: this.totals,
      subscriptions: this.subscriptions,
      streams: this.streams,
      currentSeq: (stream) => this.currentSeq(stream),
    });
  }

  /** Connects the hub to its fan-out (done once the server is listening). */
  attachFanOut(fanout: FanOut): void {
    this.fanout = fanout;
  }

  /** The per-socket limit to give Bun: above anything the policy lets through between two checks. */
  nativeBackpressureLimit(maxMessageBytes: number): number {
    return this.backpressure.nativeLimit(maxMessageBytes);
  }

  /** Messages lost to backpressure since start, hub-wide: settled plus those of subscribers lagging now. Never goes down. */
  droppedTotal(): number {
    return this.backpressure.droppedTotal();
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

  /** Readers that are not websockets (server-sent event streams of a stream). */
  get eventStreams(): number {
    return this.eventStreamCount;
  }

  /** Whether max_connections leaves room for one more reader: websockets and event streams share the limit. */
  roomFor(max: number): boolean {
    return this.connectionCount + this.eventStreamCount < max;
  }

  /** Counts an event stream against max_connections until the returned release is called (once). */
  holdEventStream(): () => void {
    this.eventStreamCount++;
    let held = true;
    return () => {
      if (held) this.eventStreamCount--;
      held = false;
    };
  }

  /** Registers a sink that sees every accepted message, in order, as it is accepted (the log, alerts). It must not block. */
  onMessage(sink: MessageSink): void {
    this.sinks.push(sink);
  }

  /** Registers a sink that sees every message when it is delivered: after the turn's log write (destinations, the recent ring, taps). */
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
   * next seq, hands it to the sinks that see it at once (the log) now, and queues
   * it for delivery at the end of the turn: to every subscriber (but `from`, when
   * a websocket client sent it) and the delivery sinks. Never waits on a
   * subscriber or the disk. Throws PublishError for a bad stream name, an
   * oversized message, or (unless log_deliver_unlogged) a logged stream while
   * the log cannot write.
   */
  publish(stream: string, data: Payload, origin: Origin, from?: Connection): Message {
    const size = payloadBytes(data);
    const settings = this.opts.settings();
    const limit = settings.max_message_bytes;
    if (size > limit) throw new PublishError("too_large", `message of ${size} bytes is larger than the limit of ${limit} bytes (setting max_message_bytes)`);
    const log = this.opts.log;
    if (log) {
      const failure = log.failure();
      if (failure !== null && !settings.log_deliver_unlogged && log.logs(stream, origin)) {
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
    this.outbox.push(msg, from);
    return msg;
  }

  /** Runs the before-delivery hooks (the log's write), then fans out this turn's messages in order. */
  private deliverAll(messages: Message[], froms: (Connection | undefined)[]): void {
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
  }

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
      const feedReaders = this.subscriptions.feedReadersOf(msg.stream);
      const receivers = s.readers + feedReaders - (sender?.subscribed ? 1 : 0);
      if (receivers > 0) {
        const size = msg.size;
        const status = this.fanout.publish(msg.stream, msg.data, sender);
        s.messagesOut += receivers;
        s.bytesOut += receivers * size;
        this.totals.messagesOut += receivers;
        this.totals.bytesOut += receivers * size;
        s.dirty = true;
        if (feedReaders > 0) for (const name of this.subscriptions.streamsWithFeeds()) { const r = this.streams.get(name); if (r) r.dirty = true; }
        this.backpressure.fannedOut(size + FRAME_OVERHEAD, status);
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

  /** Called when a subscriber's socket has written out buffered data. */
  drained(c: Connection): void {
    this.backpressure.drained(c);
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
    // A follower (a subscriber that resumes, app/sinks/replay.ts) gets its messages from its Follower, not the topic.
    if (c.grant.read && !c.replay) this.subscriptions.subscribe(s, c);
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
    this.subscriptions.unsubscribe(s, c);
    this.backpressure.left(s, c);
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
   * minute, removes streams idle for longer than the linger setting, and looks
   * again at lagging subscribers (see Backpressure.sweep).
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
    this.backpressure.sweep();
  }

  /**
   * Sets the feed rule of `stream`: its clients also receive every stream in
   * `feeds` (practable's /api/streams rules). Applies to connected clients at once.
   */
  setFeeds(stream: string, feeds: string[]): void {
    this.subscriptions.setFeeds(stream, this.streams.get(stream), feeds);
  }

  /** The feeds of a stream ([] when it has no rule). */
  feedsOf(stream: string): string[] {
    return this.subscriptions.feedsOf(stream);
  }

  /**
   * The last delivered seq of a stream: live, retired, or (a stream not seen
   * since start) the log's last seq for it. Where a resuming subscriber's replay ends.
   */
  lastDeliveredSeq(stream: string): number {
    return this.streams.get(stream)?.deliveredSeq ?? this.retiredSeq.get(stream) ?? this.opts.lastSeq?.(stream) ?? 0;
  }

  /** Counts a message written by something other than the fan-out (a resuming subscriber's follower) in messages_out. */
  countOut(m: Message): void {
    const s = this.streams.get(m.stream);
    if (s) {
      s.messagesOut++;
      s.bytesOut += m.size;
      s.dirty = true;
    }
    this.totals.messagesOut++;
    this.totals.bytesOut += m.size;
  }

  /** The last delivered seq of a stream (live or retired). */
  private currentSeq(stream: string): number {
    return this.streams.get(stream)?.deliveredSeq ?? this.retiredSeq.get(stream) ?? 0;
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
