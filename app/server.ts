import type { Server } from "bun";
import { newTokenSecret } from "./auth/stream-token.ts";
import type { StartupConfig } from "./config/startup.ts";
import type { SettingsStore } from "./config/store.ts";
import { systemClock, type Clock } from "./core/clock.ts";
import type { Logger } from "./core/logger.ts";
import type { Connection } from "./hub/connection.ts";
import { BunTopicFanOut } from "./hub/fanout.ts";
import { Hub } from "./hub/hub.ts";
import { CLOSE, streamSocketHandlers, upgradeStream, WS_PREFIX } from "./hub/websocket.ts";
import { createHttpApp } from "./http/app.ts";

/** What `startServer` needs. */
export interface ServerOptions {
  config: StartupConfig;
  store: SettingsStore;
  logger: Logger;
  clock?: Clock;
}

/** A running Switchyard: its address, hub, and a graceful stop. */
export interface RunningServer {
  port: number;
  url: string;
  hub: Hub;
  server: Server<Connection>;
  /** Stops accepting, closes every websocket with 1001, and stops the server. */
  stop(): Promise<void>;
}

/** Name of the stream-token signing secret in the settings store. */
export const TOKEN_SECRET_NAME = "stream_token_secret";

/** Starts the hub and the HTTP/websocket server on the configured host and port. */
export function startServer(opts: ServerOptions): RunningServer {
  const { config, store, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const secret = store.secret(TOKEN_SECRET_NAME, newTokenSecret);
  const settings = () => store.settings;
  const hub = new Hub({ settings, clock, logger });
  const startedAt = Date.now();
  const app = createHttpApp({ hub, store, config, logger, secret, startedAt });
  const wsDeps = { hub, settings, secret, logger };
  const boot = store.settings;

  const server: Server<Connection> = Bun.serve<Connection>({
    hostname: config.host,
    port: config.port,
    // Bodies up to twice the message limit reach the route, which answers 413 with the limit.
    maxRequestBodySize: Math.max(2 * boot.max_message_bytes, 1024 * 1024),
    fetch(req, srv) {
      const url = new URL(req.url);
      if (url.pathname.startsWith(WS_PREFIX)) return upgradeStream(req, url, srv, wsDeps);
      return app.fetch(req, { server: srv });
    },
    websocket: {
      ...streamSocketHandlers(wsDeps),
      // Frames up to twice the limit reach the handler, which closes with 1009 and a reason naming the limit.
      maxPayloadLength: 2 * boot.max_message_bytes,
      backpressureLimit: hub.nativeBackpressureLimit(boot.max_message_bytes),
      closeOnBackpressureLimit: false,
      idleTimeout: boot.keepalive_seconds,
      sendPings: true,
      perMessageDeflate: false,
    },
  });
  hub.attachFanOut(new BunTopicFanOut(server));
  const ticker = setInterval(() => hub.tick(), 1000);
  const port = server.port!;
  logger.info("switchyard listening", { http: `http://${config.host}:${port}`, websocket: `ws://${config.host}:${port}/ws/{stream}`, data_dir: config.dataDir, access: boot.access });

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      clearInterval(ticker);
      server.stop(false);
      const open = hub.allConnections();
      for (const c of open) {
        c.closing = true;
        c.ws?.close(CLOSE.goingAway, "server shutting down");
      }
      // Give close frames a moment to go out before the sockets are cut.
      const deadline = Date.now() + 2000;
      while (hub.connections > 0 && Date.now() < deadline) await Bun.sleep(20);
      await server.stop(true);
      logger.info("switchyard stopped", { closed_connections: open.length });
    })());

  return { port, url: `http://127.0.0.1:${port}`, hub, server, stop };
}
