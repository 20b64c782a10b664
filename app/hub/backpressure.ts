import type { Logger } from "../core/logger.ts";
import type { Settings } from "../config/settings.ts";
import type { Connection } from "./connection.ts";
import type { StreamState } from "./stream-state.ts";
import type { Subscriptions } from "./subscriptions.ts";
import type { HubTotals } from "./totals.ts";

/** What the backpressure policy needs from the hub. */
export interface BackpressureDeps {
  settings: () => Settings;
  logger: Logger;
  totals: HubTotals;
  subscriptions: Subscriptions;
  /** The live streams, by name. */
  streams: ReadonlyMap<string, StreamState>;
  /** The last delivered seq of a stream, live or retired (0 when unknown). */
  currentSeq(stream: string): number;
}

/**
 * The backpressure policy. Fan-out uses native topics; this watches how many
 * bytes the hub has handed to them since its last check and, once that passes a
 * quarter of the limit while any publish reported backpressure, checks the
 * buffered bytes of the subscribers of the streams that had traffic. A
 * subscriber over the limit is taken off its topic and its misses counted
 * (policy `drop`) or closed with 1013 (policy `disconnect`). The native
 * per-socket limit is set above the policy limit plus a check interval, so no
 * message is dropped uncounted.
 */
export class Backpressure {
  private bytesSinceCheck = 0;
  private pressure = false;

  constructor(private readonly deps: BackpressureDeps) {}

  /** Bytes a subscriber may have buffered before the policy applies. */
  get limit(): number {
    return this.deps.settings().backpressure_limit_bytes;
  }

  /** How many bytes may be fanned out between two checks of the subscribers' buffers. */
  get checkEveryBytes(): number {
    return Math.max(16 * 1024, Math.floor(this.limit / 4));
  }

  /** The per-socket limit to give Bun: above anything the policy lets through between two checks. */
  nativeLimit(maxMessageBytes: number): number {
    return this.limit + this.checkEveryBytes + maxMessageBytes + 64 * 1024;
  }

  /**
   * Notes `bytes` handed to the fan-out, which answered `status` (Bun's send
   * status: -1 backpressure, 0 dropped), and checks the subscribers when due.
   */
  fannedOut(bytes: number, status: number): void {
    this.bytesSinceCheck += bytes;
    if (status <= 0) this.pressure = true;
    if (status === 0) this.check(true);
    else if (this.pressure && this.bytesSinceCheck >= this.checkEveryBytes) this.check(false);
  }

  /**
   * Checks the buffered bytes of the subscribers of every stream that had traffic
   * since the last check, and applies the policy to those over the limit.
   * `dropped` is true when the native layer reported a drop just now.
   */
  check(dropped = false): void {
    const limit = this.limit;
    const policy = this.deps.settings().backpressure_policy;
    let still = false;
    for (const s of this.deps.streams.values()) {
      if (!s.dirty) continue;
      s.dirty = false;
      for (const c of s.connections) {
        if (!c.subscribed || !c.ws) continue;
        const buffered = c.ws.getBufferedAmount();
        if (buffered <= limit) {
          if (buffered > 0) still = true;
          continue;
        }
        if (dropped) this.deps.logger.warn("native layer dropped a message before the backpressure check", { stream: s.name, origin: c.origin, buffered });
        if (policy === "disconnect") this.disconnectSlow(s, c, buffered, limit);
        else this.holdOff(s, c);
      }
    }
    this.bytesSinceCheck = 0;
    this.pressure = still;
  }

  /** Called when a subscriber's socket has written out buffered data: a lagging one below half the limit catches up. */
  drained(c: Connection): void {
    if (!c.lag || !c.ws || c.closing) return;
    if (c.ws.getBufferedAmount() > this.limit / 2) return;
    const s = this.deps.streams.get(c.stream);
    if (!s) return;
    const missed = this.missedWhileLagging(s, c);
    c.dropped += missed;
    s.droppedSettled += missed;
    this.deps.totals.droppedSettled += missed;
    c.lag = undefined;
    this.deps.subscriptions.subscribe(s, c);
    this.deps.logger.info("slow subscriber caught up", { stream: s.name, origin: c.origin, dropped: missed });
  }

  /** Settles the misses of a subscriber that leaves while lagging. */
  left(s: StreamState, c: Connection): void {
    if (!c.lag) return;
    const missed = this.missedWhileLagging(s, c);
    s.droppedSettled += missed;
    this.deps.totals.droppedSettled += missed;
    c.lag = undefined;
  }

  /**
   * Once a second: a lagging subscriber whose socket drained before it was held
   * off gets no drain event, so look again. The policy is read now, not when it
   * began lagging: switched to `disconnect`, a lagging subscriber is closed.
   */
  sweep(): void {
    const disconnect = this.deps.settings().backpressure_policy === "disconnect";
    for (const s of this.deps.streams.values()) {
      for (const c of s.connections) {
        if (!c.lag) continue;
        this.drained(c);
        if (c.lag && disconnect && !c.closing && c.ws) this.disconnectSlow(s, c, c.ws.getBufferedAmount(), this.limit);
      }
    }
  }

  /** Messages lost since start, hub-wide: settled plus those of subscribers lagging now. Never goes down. */
  droppedTotal(): number {
    let live = 0;
    for (const s of this.deps.streams.values()) live += s.dropped - s.droppedSettled;
    return this.deps.totals.droppedSettled + live;
  }

  /** Messages a lagging subscriber missed: on its stream (less its own) and on its feeds. */
  private missedWhileLagging(s: StreamState, c: Connection): number {
    if (!c.lag) return 0;
    let missed = s.deliveredSeq - c.lag.seq - (c.ownDelivered - c.lag.own);
    for (const [feed, seq] of c.lag.feeds) missed += this.deps.currentSeq(feed) - seq;
    return missed;
  }

  private holdOff(s: StreamState, c: Connection): void {
    this.deps.subscriptions.unsubscribe(s, c);
    c.lag = { seq: s.deliveredSeq, own: c.ownDelivered, feeds: this.deps.subscriptions.feedsOf(s.name).map((f) => [f, this.deps.currentSeq(f)]) };
    this.deps.logger.warn("slow subscriber: dropping its messages until it catches up", { stream: s.name, origin: c.origin, limit: this.limit });
  }

  private disconnectSlow(s: StreamState, c: Connection, buffered: number, limit: number): void {
    this.deps.subscriptions.unsubscribe(s, c);
    s.slowDisconnects++;
    this.deps.totals.slowDisconnects++;
    c.closing = true;
    c.ws!.close(1013, `too slow: ${buffered} bytes waiting, limit ${limit} (backpressure policy disconnect)`);
    // The close frame waits behind the unsent data; a reader that never reads is cut off.
    c.timers.push(setTimeout(() => c.ws?.readyState === 1 && c.ws.terminate(), 5000));
    this.deps.logger.warn("slow subscriber disconnected", { stream: s.name, origin: c.origin, buffered, limit });
  }
}
