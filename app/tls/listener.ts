import type { Server, ServerWebSocket, TLSOptions } from "bun";
import type { Payload } from "../core/message.ts";
import type { Connection } from "../hub/connection.ts";
import type { FanOut } from "../hub/fanout.ts";

/** The options Switchyard passes to Bun.serve. */
export type ServeOptions = Parameters<typeof Bun.serve<Connection>>[0];

/**
 * The HTTP/websocket listener, able to change its certificate while running.
 *
 * Bun 1.4's `server.reload()` ignores `tls`, so a new certificate gets a new
 * Bun.serve on the same port (SO_REUSEPORT), and the old one stops accepting:
 * connections already open, wss:// clients included, stay on the old listener
 * with the certificate they shook hands with, until they close. Bun's topics
 * belong to one listener, so publishing goes to every listener still holding
 * websockets (`fanOut`). With one listener (the usual case) it is exactly
 * Bun's own topic fan-out.
 */
export class RotatingListener {
  private current: Server<Connection>;
  private retired: Server<Connection>[] = [];
  /** Which listener a websocket belongs to, for publishes that skip the sender. */
  private readonly home = new WeakMap<object, Server<Connection>>();
  private readonly port: number;

  /**
   * `options` are Bun.serve's; with `tls` the port is shared with later listeners (SO_REUSEPORT),
   * and `hstsSeconds` (when above 0) adds Strict-Transport-Security to every HTTPS response.
   */
  constructor(private readonly options: ServeOptions, tls?: TLSOptions, private readonly hstsSeconds: () => number = () => 0) {
    if (tls && options.port) refuseBusyPort(options.hostname ?? "0.0.0.0", options.port as number);
    this.current = this.listen(tls, options.port as number);
    this.port = this.current.port!;
  }

  /** The listener new connections reach. */
  get server(): Server<Connection> {
    return this.current;
  }

  /** Listeners still serving connections opened before a certificate change. */
  get retiredCount(): number {
    return this.retired.length;
  }

  /** New connections get `tls`; open ones keep theirs. Throws (keeping the old listener) when Bun refuses it. */
  rotate(tls: TLSOptions): void {
    const next = this.listen(tls, this.port);
    const old = this.current;
    this.current = next;
    old.stop(false);
    this.retired.push(old);
    this.sweep();
  }

  /** Stops retired listeners whose last websocket and request have finished. */
  sweep(): void {
    this.retired = this.retired.filter((s) => {
      if (s.pendingWebSockets > 0 || s.pendingRequests > 0) return true;
      s.stop(true);
      return false;
    });
  }

  /** Stops accepting on every listener; `closeActive` also cuts open connections. */
  async stop(closeActive: boolean): Promise<void> {
    await Promise.all([this.current, ...this.retired].map((s) => s.stop(closeActive)));
  }

  /** Publishes through every listener's topics (see the class comment). */
  fanOut(): FanOut {
    return {
      publish: (stream: string, data: Payload, except?: Connection): number => {
        if (this.retired.length === 0) return except?.ws ? except.ws.publish(stream, data) : this.current.publish(stream, data, false);
        const own = except?.ws ? this.home.get(except) : undefined;
        let status = 0;
        for (const s of [this.current, ...this.retired]) {
          const r = s === own ? except!.ws!.publish(stream, data) : s.publish(stream, data, false);
          if (r < 0 || status < 0) status = -1;
          else status = Math.max(status, r);
        }
        return status;
      },
      subscribe: (conn: Connection, stream: string) => conn.ws?.subscribe(stream),
      unsubscribe: (conn: Connection, stream: string) => {
        if (conn.ws && conn.ws.readyState === 1) conn.ws.unsubscribe(stream);
      },
    };
  }

  private listen(tls: TLSOptions | undefined, port: number): Server<Connection> {
    // Without TLS there is never a second listener: Bun.serve exactly as given.
    if (!tls) return Bun.serve<Connection>({ ...this.options, port } as ServeOptions);
    const ws = this.options.websocket!;
    const open = ws.open;
    let server!: Server<Connection>;
    const fetch = this.options.fetch;
    server = Bun.serve<Connection>({
      ...this.options,
      port,
      fetch: this.withHsts(fetch),
      tls,
      reusePort: true,
      websocket: {
        ...ws,
        open: (socket: ServerWebSocket<Connection>) => {
          if (typeof socket.data === "object" && socket.data !== null) this.home.set(socket.data, server);
          return open?.(socket);
        },
      },
    } as ServeOptions);
    return server;
  }

  private withHsts(fetch: ServeOptions["fetch"]): ServeOptions["fetch"] {
    const hsts = this.hstsSeconds;
    return async function fetchWithHsts(this: Server<Connection>, req: Request, srv: Server<Connection>) {
      const res = await (fetch as (req: Request, srv: Server<Connection>) => Response | undefined | Promise<Response | undefined>).call(this, req, srv);
      const seconds = hsts();
      if (res && seconds > 0 && !res.headers.has("strict-transport-security")) {
        try {
          res.headers.set("Strict-Transport-Security", `max-age=${seconds}`);
        } catch {
          // An immutable response (e.g. a static one) goes out as it is.
        }
      }
      return res;
    } as ServeOptions["fetch"];
  }
}

/**
 * SO_REUSEPORT would let a second server share a port already in use; with TLS
 * the listener uses it (for certificate changes), so a port some other program
 * holds is refused first, as it would be without.
 */
function refuseBusyPort(hostname: string, port: number): void {
  const probe = Bun.listen({ hostname, port, socket: { data() {} } });
  probe.stop(true);
}
