import type { Connection } from "./connection.ts";
import { RateWindow } from "../core/rate.ts";

/** A stream's counters that only go up for the process's lifetime, kept when the stream is retired. */
export interface StreamCounters {
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
  droppedSettled: number;
  slowDisconnects: number;
}

/** Live state and counters of one stream. */
export class StreamState {
  seq: number;
  /** The seq of the last message delivered (fanned out); behind `seq` until the end of the turn. */
  deliveredSeq: number;
  readonly connections = new Set<Connection>();
  /** Connections subscribed to the topic (readers that are not lagging). */
  readers = 0;
  /** Websocket connections that have published at least once. */
  wsPublishers = 0;
  /** Other origins (UDP, HTTP, relay) and when they last published, ms. */
  readonly otherPublishers = new Map<string, number>();
  /** The origin last noted in otherPublishers, and when (µs). */
  lastOrigin = "";
  lastOriginAt = 0;
  messagesIn = 0;
  bytesIn = 0;
  messagesOut = 0;
  bytesOut = 0;
  /** Drops of lagging subscribers that have caught up again, or left. */
  droppedSettled = 0;
  /** Subscribers disconnected for being too slow. */
  slowDisconnects = 0;
  lastMessageAt = 0;
  /** ms when the stream last had neither connections nor messages; 0 while busy. */
  idleSince = 0;
  readonly rateIn = new RateWindow();
  /** Had messages fanned out since the last backpressure check (its subscribers are looked at then). */
  dirty = false;

  /**
   * `carried`: the counters of the same stream when it was last retired (after
   * stream_linger_seconds idle), so that Prometheus counters never go down when
   * a rarely-sending device's stream comes back.
   */
  constructor(readonly name: string, readonly createdAt: number, lastSeq: number, carried?: StreamCounters) {
    this.seq = lastSeq;
    this.deliveredSeq = lastSeq;
    if (carried) Object.assign(this, carried);
  }

  /** The counters to carry over when the stream is retired. */
  counters(): StreamCounters {
    return { messagesIn: this.messagesIn, bytesIn: this.bytesIn, messagesOut: this.messagesOut, bytesOut: this.bytesOut, droppedSettled: this.dropped, slowDisconnects: this.slowDisconnects };
  }

  /** Messages lost to backpressure, including those of subscribers still lagging. */
  get dropped(): number {
    let d = this.droppedSettled;
    // Live misses on the stream itself; misses on feeds are added when the subscriber catches up.
    for (const c of this.connections) if (c.lag) d += this.deliveredSeq - c.lag.seq - (c.ownDelivered - c.lag.own);
    return d;
  }

  get subscribers(): number {
    let n = 0;
    for (const c of this.connections) if (c.grant.read && !c.refusal) n++;
    return n;
  }

  get publishers(): number {
    return this.wsPublishers + this.otherPublishers.size;
  }
}

/** The JSON shape of a stream's stats in the API. */
export interface StreamStats {
  stream: string;
  seq: number;
  subscribers: number;
  publishers: number;
  messages_in: number;
  bytes_in: number;
  messages_out: number;
  bytes_out: number;
  dropped: number;
  slow_disconnects: number;
  last_message_at: string | null;
  rate_1s: number;
  rate_1m: number;
  created_at: string;
}

/** Stats of a stream as the API shows them. */
export function streamStats(s: StreamState): StreamStats {
  return {
    stream: s.name,
    seq: s.seq,
    subscribers: s.subscribers,
    publishers: s.publishers,
    messages_in: s.messagesIn,
    bytes_in: s.bytesIn,
    messages_out: s.messagesOut,
    bytes_out: s.bytesOut,
    dropped: s.dropped,
    slow_disconnects: s.slowDisconnects,
    last_message_at: s.lastMessageAt ? new Date(s.lastMessageAt).toISOString() : null,
    rate_1s: s.rateIn.perSecond,
    rate_1m: Math.round(s.rateIn.perMinute * 100) / 100,
    created_at: new Date(s.createdAt).toISOString(),
  };
}
