import type { MiddlewareHandler } from "hono";
import { isLoopback, tokenFromRequest } from "../auth/access.ts";
import { TokenError, verifyStreamToken } from "../auth/stream-token.ts";
import { AppError } from "../core/errors.ts";
import type { HttpDeps, HttpEnv } from "./deps.ts";
import { accessAddress } from "./stream-access.ts";

/**
 * Guards the routes that run the box (destinations, feed rules): a client on
 * loopback may (as on a practable host, whose boot scripts curl localhost);
 * anyone else needs a token with the `admin` scope.
 */
export const requireAdmin = (deps: HttpDeps): MiddlewareHandler<HttpEnv> =>
  async function requireAdmin(c, next) {
    if (isLoopback(accessAddress(c))) return next();
    const token = tokenFromRequest(c.req.raw, new URL(c.req.url));
    if (!token) throw new AppError(401, "this route changes or shows how the box runs: call it from the box itself, or with a token that has the 'admin' scope (switchyard token --stream '*' --scopes admin)");
    try {
      const claims = await verifyStreamToken(deps.secret, token, deps.store.settings.public_url || undefined);
      if (!claims.scopes.includes("admin")) throw new AppError(403, "this token lacks the 'admin' scope");
    } catch (err) {
      if (err instanceof TokenError) throw new AppError(401, err.message);
      throw err;
    }
    return next();
  };
