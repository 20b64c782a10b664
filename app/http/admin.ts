import type { Context, MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import { isLoopback, tokenFromRequest } from "../auth/access.ts";
import { SESSION_COOKIE } from "../auth/admin-session.ts";
import { TokenError, verifyStreamToken } from "../auth/stream-token.ts";
import { AppError } from "../core/errors.ts";
import type { HttpDeps, HttpEnv } from "./deps.ts";
import { accessAddress } from "./stream-access.ts";

/** True when the request carries a valid admin UI session cookie. */
export function hasAdminSession(c: Context<HttpEnv>, deps: HttpDeps): boolean {
  return deps.adminSessions.valid(getCookie(c, SESSION_COOKIE));
}

/**
 * Guards the routes that run the box (destinations, feed rules, settings, Slack,
 * queries): an admin UI session, or a token with the `admin` scope, or (when the
 * setting api_loopback_admin allows, as on a practable host whose boot scripts
 * curl localhost) a client on the box itself.
 */
export const requireAdmin = (deps: HttpDeps): MiddlewareHandler<HttpEnv> =>
  async function requireAdmin(c, next) {
    if (hasAdminSession(c, deps)) return next();
    if (deps.store.settings.api_loopback_admin && isLoopback(accessAddress(c))) return next();
    const token = tokenFromRequest(c.req.raw, new URL(c.req.url));
    if (!token) throw new AppError(401, "this route changes or shows how the box runs: sign in at /admin, or send a token that has the 'admin' scope (switchyard token --stream '*' --scopes admin)");
    try {
      const claims = await verifyStreamToken(deps.secret, token, deps.store.settings.public_url || undefined);
      if (!claims.scopes.includes("admin")) throw new AppError(403, "this token lacks the 'admin' scope");
    } catch (err) {
      if (err instanceof TokenError) throw new AppError(401, err.message);
      throw err;
    }
    return next();
  };
