import type { Server } from "bun";
import type { Payload } from "../core/message.ts";
import type { Connection } from "./connection.ts";

/**
 * Delivers a stream's messages to its subscribers. The hub talks to subscribers
 * only through this, so a broker (e.g. NATS) can take its place later.
 *
 * `publish` returns Bun's send status: >0 bytes sent to all, -1 when some
 * subscriber is under backpressure, 0 when some subscriber dropped it.
 */
export interface FanOut {
  publish(stream: string, data: Payload, except?: Connection): number;
  subscribe(conn: Connection, stream: string): void;
  unsubscribe(conn: Connection, stream: string): void;
}

/** Fan-out through Bun's native websocket topics (uWebSockets' topic tree): one topic per stream. */
export class BunTopicFanOut implements FanOut {
  constructor(private readonly server: Server<Connection>) {}

  publish(stream: string, data: Payload, except?: Connection): number {
    // ws.publish skips the sender itself; compression stays off (it costs more than it saves on small messages).
    return except?.ws ? except.ws.publish(stream, data) : this.server.publish(stream, data, false);
  }

  subscribe(conn: Connection, stream: string): void {
    conn.ws?.subscribe(stream);
  }

  unsubscribe(conn: Connection, stream: string): void {
    if (conn.ws && conn.ws.readyState === 1) conn.ws.unsubscribe(stream);
  }
}
