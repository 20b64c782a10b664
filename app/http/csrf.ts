import type { Context, MiddlewareHandler } from "hono";
import { csrf } from "hono/csrf";
import { HTTPException } from "hono/http-exception";
import { AppError } from "../core/errors.ts";
import type { HttpDeps, HttpEnv } from "./deps.ts";

/**
 * The origins a browser form may come from: this server as the browser reached it
 * (its Host header, or the proxy's X-Forwarded-Host) and the public_url setting.
 */
function sameOrigin(deps: HttpDeps) {
  return (origin: string, c: Context<HttpEnv>): boolean => {
    let o: URL;
    try {
      o = new URL(origin);
    } catch {
      return false;
    }
    const hosts = [c.req.header("x-forwarded-host"), c.req.header("host"), new URL(c.req.url).host].filter(Boolean);
    if (hosts.includes(o.host)) return true;
    const pub = deps.store.settings.public_url;
    return pub !== "" && new URL(pub).origin === o.origin;
  };
}

const REFUSED = "cross-site request refused: this form or API call came from another site (its Origin or Sec-Fetch-Site header says so); use the admin UI on this server, or call the API without a browser";

/** hono/csrf, with its bare 403 turned into the API's JSON error. */
function guarded(deps: HttpDeps): MiddlewareHandler<HttpEnv> {
  const check = csrf({ origin: sameOrigin(deps), secFetchSite: ["same-origin"] });
  return async (c, next) => {
    try {
      await check(c, next);
    } catch (err) {
      if (err instanceof HTTPException && err.status === 403) throw new AppError(403, REFUSED);
      throw err;
    }
  };
}

/**
 * CSRF protection of the admin UI: every form POST must come from a page of this
 * server (Origin or Sec-Fetch-Site), on top of the SameSite=Strict session cookie.
 */
export const uiCsrf = (deps: HttpDeps): MiddlewareHandler<HttpEnv> => guarded(deps);

/**
 * CSRF protection of /api/*: a browser (which sends Origin or Sec-Fetch-Site) must
 * be on this server's origin; non-browser clients (curl, boot scripts, other
 * servers) send neither and are judged by their credentials alone.
 */
export const apiCsrf = (deps: HttpDeps): MiddlewareHandler<HttpEnv> => {
  const check = guarded(deps);
  return async (c, next) => {
    if (c.req.header("origin") === undefined && c.req.header("sec-fetch-site") === undefined) return next();
    return check(c, next);
  };
};
