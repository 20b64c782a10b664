import type { Context, MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import { isLoopback, tokenFromRequest } from "../auth/access.ts";
import { verifyAdminToken } from "../auth/admin-token.ts";
import { SESSION_COOKIE } from "../auth/admin-session.ts";
import { TokenError } from "../auth/stream-token.ts";
import { AppError } from "../core/errors.ts";
import type { HttpDeps, HttpEnv } from "./deps.ts";
import { accessAddress } from "./stream-access.ts";

/** True when the request carries a valid admin UI session cookie. */
export function hasAdminSession(c: Context<HttpEnv>, deps: HttpDeps): boolean {
  return deps.adminSessions.valid(getCookie(c, SESSION_COOKIE));
}

const NEEDS_ADMIN = "sign in at /admin, or send an admin token (make one with: switchyard token --admin)";

/** Passes with an admin session or an admin token; throws 401 saying what to send otherwise. */
async function checkAdmin(c: Context<HttpEnv>, deps: HttpDeps, what: string): Promise<void> {
  if (hasAdminSession(c, deps)) return;
  const token = tokenFromRequest(c.req.raw, new URL(c.req.url));
  if (!token) throw new AppError(401, `${what}: ${NEEDS_ADMIN}`);
  try {
    await verifyAdminToken(deps.adminTokenSecret(), token);
  } catch (err) {
    if (err instanceof TokenError) throw new AppError(401, `${what}: ${err.message}`);
    throw err;
  }
}

/**
 * Guards the routes that run the box (settings, queries, Slack, alerts, Grafana,
 * destination reconnects): an admin UI session or an admin token. Being on the
 * box is not enough: a reverse proxy on the box makes every client look local.
 */
export const requireAdmin = (deps: HttpDeps): MiddlewareHandler<HttpEnv> =>
  async function requireAdmin(c, next) {
    await checkAdmin(c, deps, "this route changes or shows how the box runs");
    return next();
  };

/**
 * Guards practable's local API (destination rules, feed rules): what an admin may
 * do, and also, while the setting practable_loopback_api is true, a client on the
 * box itself that did not come through a proxy, as practable's boot scripts do
 * with `curl localhost:8888/api/destinations`. Nothing else is open to loopback.
 */
export const requirePractableApi = (deps: HttpDeps): MiddlewareHandler<HttpEnv> =>
  async function requirePractableApi(c, next) {
    if (deps.store.settings.practable_loopback_api && isLoopback(accessAddress(c))) return next();
    const local = deps.store.settings.practable_loopback_api ? " (clients on the box itself, not through a proxy, need neither)" : "";
    await checkAdmin(c, deps, `this route changes the box's relays${local}`);
    return next();
  };
