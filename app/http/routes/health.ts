import type { Hono } from "hono";
import { VERSION } from "../../version.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

/** Binds GET /healthz (JSON) and GET /healthcheck (practable's `"ok"`). */
export function bindHealthRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/healthz", (c) =>
    c.json({ status: "ok", version: VERSION, uptime_seconds: Math.round((Date.now() - deps.startedAt) / 1000), connections: deps.hub.connections,
      log: { writable: deps.spool.failure === null, error: deps.spool.failure, not_stored: deps.hub.totals.refusedUnlogged + deps.hub.totals.deliveredUnlogged, refused: deps.hub.totals.refusedUnlogged, delivered_unlogged: deps.hub.totals.deliveredUnlogged } }),
  );
  app.get("/healthcheck", (c) => c.json("ok"));
}
