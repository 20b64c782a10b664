import type { ServerWebSocket } from "bun";
import type { Grant } from "../../app/auth/access.ts";
import type { Payload } from "../../app/core/message.ts";
import { newConnection, type Connection } from "../../app/hub/connection.ts";
import type { FanOut } from "../../app/hub/fanout.ts";

/** A subscriber's socket as the fake sees it: what it was sent, what is still buffered, how it was closed. */
export interface FakeSocket {
  /** Frames sent to it (text as string), in order. */
  frames: Payload[];
  /** Bytes sent and not yet read by the client. */
  buffered: number;
  /** A fast reader reads everything at once; a stalled one reads nothing until `read()`. */
  stalled: boolean;
  closed?: { code: number; reason: string };
  terminated: boolean;
}

/**
 * A FanOut without sockets: topics are sets of connections, each with a
 * FakeSocket whose buffered bytes grow as frames are sent to a stalled reader.
 * `publish` answers as Bun does: the bytes sent, -1 when some receiver now has
 * bytes waiting, 0 when some receiver was over `nativeLimit` and got nothing.
 */
export class FakeFanOut implements FanOut {
  private readonly topics = new Map<string, Set<Connection>>();
  readonly sockets = new Map<Connection, FakeSocket>();
  /** Messages fanned out, by stream (one per publish call, whatever the number of receivers). */
  readonly published: { stream: string; data: Payload }[] = [];

  constructor(private readonly nativeLimit = Number.POSITIVE_INFINITY) {}

  /** A websocket connection with a fake socket, as the upgrade would build it. */
  connection(stream: string, grant: Partial<Grant> = {}, stalled = false): Connection {
    const c = newConnection(stream, `ws:127.0.0.1:${40000 + this.sockets.size}`, { read: true, write: true, via: "open", ...grant });
    const sock: FakeSocket = { frames: [], buffered: 0, stalled, terminated: false };
    this.sockets.set(c, sock);
    c.ws = {
      get readyState() { return sock.closed || sock.terminated ? 3 : 1; },
      getBufferedAmount: () => sock.buffered,
      close: (code: number, reason: string) => { sock.closed = { code, reason }; },
      terminate: () => { sock.terminated = true; },
    } as unknown as ServerWebSocket<Connection>;
    return c;
  }

  /** The fake socket of a connection. */
  socket(c: Connection): FakeSocket {
    return this.sockets.get(c)!;
  }

  publish(stream: string, data: Payload, except?: Connection): number {
    this.published.push({ stream, data });
    const size = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
    let status = size;
    for (const c of this.topics.get(stream) ?? []) {
      if (c === except) continue;
      const sock = this.sockets.get(c)!;
      if (sock.buffered > this.nativeLimit) {
        status = 0;
        continue;
      }
      sock.frames.push(data);
      if (sock.stalled) {
        sock.buffered += size;
        if (status > 0) status = -1;
      }
    }
    return status;
  }

  subscribe(conn: Connection, stream: string): void {
    let set = this.topics.get(stream);
    if (!set) this.topics.set(stream, (set = new Set()));
    set.add(conn);
  }

  unsubscribe(conn: Connection, stream: string): void {
    this.topics.get(stream)?.delete(conn);
  }

  /** The connections subscribed to a stream's topic now. */
  subscribers(stream: string): Connection[] {
    return [...(this.topics.get(stream) ?? [])];
  }
}
