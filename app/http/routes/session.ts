import type { Hono } from "hono";
import { SESSION_PREFIX } from "../../relay/session-server.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

/** Binds POST /session/{topic}: the access step of a relay session (the upgrade itself is in the server's fetch). */
export function bindSessionRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.post(`${SESSION_PREFIX}*`, (c) => deps.sessions.access(c.req.raw, decodeURIComponent(new URL(c.req.url).pathname.slice(SESSION_PREFIX.length))));
}
