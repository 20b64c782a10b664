import type { ServerWebSocket } from "bun";
import type { Grant } from "../auth/access.ts";
import type { Follower, ReplayRequest } from "../sinks/replay.ts";

/** Why a connection is refused right after the upgrade: a close code and a reason. */
export interface Refusal {
  code: number;
  reason: string;
}

/** One websocket client, kept in `ws.data`. */
export interface Connection {
  id: number;
  stream: string;
  /** `ws:<addr>:<port>` */
  origin: string;
  grant: Grant;
  /** Set when the upgrade is accepted only to send a close frame with a reason. */
  refusal?: Refusal;
  ws?: ServerWebSocket<Connection>;
  /** Subscribed to the stream's topic now (has read, and is not lagging). */
  subscribed: boolean;
  /** Messages this connection published. */
  published: number;
  /** Set while a slow subscriber is held off its topic under the drop policy. */
  /** Messages of this connection that have been delivered (fanned out to the others). */
  ownDelivered: number;
  /** Set while a slow subscriber is held off its topic: the delivered seqs and own count when it began. */
  lag?: { seq: number; own: number; feeds: [string, number][] };
  /** Messages this subscriber lost to backpressure. */
  dropped: number;
  /** Being closed by the server (slow, shutdown, token expired). */
  closing: boolean;
  timers: ReturnType<typeof setTimeout>[];
  /** ms when anything (a message or a pong) last came from the client; the keepalive sweep pings and closes from it. */
  lastHeard: number;
  /** ms of the last keepalive ping sent. */
  pingedAt: number;
  /** Set for a subscriber that resumes or asked for framing (?after_seq, since, last, envelope): it is fed by `follower`, never by the topic. */
  replay?: ReplayRequest;
  follower?: Follower;
  /** The token's practable booking_id (relay sessions), so a denied booking's connections can be closed. */
  bookingId?: string;
}

let nextId = 1;

/** Builds the per-connection record handed to `server.upgrade`. */
export function newConnection(stream: string, origin: string, grant: Grant, refusal?: Refusal): Connection {
  return { id: nextId++, stream, origin, grant, refusal, subscribed: false, published: 0, ownDelivered: 0, dropped: 0, closing: false, timers: [], lastHeard: Date.now(), pingedAt: 0 };
}
