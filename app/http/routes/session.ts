import type { Hono } from "hono";
import { cors } from "hono/cors";
import { SESSION_PREFIX } from "../../sources/relay-sessions.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { clientScheme } from "../stream-access.ts";

/**
 * Binds POST /session/{topic}: the access step of a relay session (the upgrade
 * itself is in the server's fetch). Browsers on the origins of the
 * `cors_origins` setting may call it from another origin: their preflight and
 * answer carry the CORS headers; other origins get none (the browser refuses).
 * Behind a trusted TLS proxy (`trusted_proxies`, X-Forwarded-Proto or Forwarded)
 * the session uri it answers is wss://.
 */
export function bindSessionRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.use(`${SESSION_PREFIX}*`, cors({
    origin: (origin) => {
      const allowed = deps.store.settings.cors_origins;
      return allowed.includes("*") || allowed.includes(origin) ? origin : null;
    },
    allowMethods: ["POST", "OPTIONS"],
    allowHeaders: ["Authorization", "Content-Type"],
    maxAge: 600,
  }));
  app.post(`${SESSION_PREFIX}*`, (c) => deps.sessions.access(c.req.raw, decodeURIComponent(new URL(c.req.url).pathname.slice(SESSION_PREFIX.length)), clientScheme(c, deps)));
}
