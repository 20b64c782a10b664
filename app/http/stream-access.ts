import type { Context } from "hono";
import { getCookie } from "hono/cookie";
import { verifyAdminToken } from "../auth/admin-token.ts";
import { SESSION_COOKIE } from "../auth/admin-session.ts";
import { AccessDenied, authorizeStream, clientAddress, forwardedClient, forwardedScheme, isLoopback, tokenFromRequest, type Grant } from "../auth/access.ts";
import { addressMatcher } from "../core/cidr.ts";
import { topicCovers, TokenError, verifyStreamToken } from "../auth/stream-token.ts";
import { AppError } from "../core/errors.ts";
import type { HttpDeps, HttpEnv } from "./deps.ts";

/** The client's address, as Bun saw it ("" when unknown, e.g. in `app.request` tests). */
export function remoteAddress(c: Context<HttpEnv>): string {
  return c.env?.server?.requestIP(c.req.raw)?.address ?? "";
}

/** The address access decisions use: "" (not local) for requests that came through a proxy. */
export function accessAddress(c: Context<HttpEnv>): string {
  return clientAddress(c.req.raw, remoteAddress(c));
}

const matchers = new WeakMap<readonly string[], (address: string) => boolean>();

/** A test for "is this peer one of the trusted_proxies" (built once per settings change). */
export function trustedProxies(deps: HttpDeps): (address: string) => boolean {
  const list = deps.store.settings.trusted_proxies;
  let m = matchers.get(list);
  if (!m) matchers.set(list, (m = addressMatcher(list)));
  return m;
}

/** Who sent the request, for limits and logs: the peer, or the client a trusted proxy names (see forwardedClient). */
export function clientIdentity(c: Context<HttpEnv>, deps: HttpDeps): string {
  return forwardedClient(c.req.raw, remoteAddress(c), trustedProxies(deps));
}

/** The scheme the client used: the request's own, or what a trusted proxy says (see forwardedScheme). */
export function clientScheme(c: Context<HttpEnv>, deps: HttpDeps): "http" | "https" {
  return forwardedScheme(c.req.raw, remoteAddress(c), trustedProxies(deps));
}

/** True when the request carries the admin's credentials: an admin UI session, or an admin token. */
async function isAdmin(c: Context<HttpEnv>, deps: HttpDeps, token: string | null): Promise<boolean> {
  if (deps.adminSessions.valid(getCookie(c, SESSION_COOKIE))) return true;
  if (!token) return false;
  try {
    await verifyAdminToken(deps.adminTokenSecret(), token);
    return true;
  } catch (err) {
    if (err instanceof TokenError) return false;
    throw err;
  }
}

/**
 * Checks that the request may use `stream`, by the access policy and any token;
 * throws a 401/403 AppError if not. The admin (a session or an admin token) may
 * use every stream, as on every other /api route.
 */
export async function requireStreamGrant(c: Context<HttpEnv>, deps: HttpDeps, stream: string, need: "read" | "write"): Promise<Grant> {
  const settings = deps.store.settings;
  const token = tokenFromRequest(c.req.raw, new URL(c.req.url));
  let grant: Grant;
  try {
    grant = await authorizeStream({
      policy: settings.access, remoteAddress: accessAddress(c), token,
      stream, secret: deps.verifyKeys, audience: settings.public_url, isDenied: (bid) => deps.bookings.isDenied(bid),
    });
  } catch (err) {
    if (!(err instanceof AccessDenied)) throw err;
    if (await isAdmin(c, deps, token)) return { read: true, write: true, via: "admin" };
    throw new AppError(err.status, err.reason);
  }
  if (!grant[need] && (await isAdmin(c, deps, token))) return { read: true, write: true, via: "admin" };
  if (!grant[need]) throw new AppError(403, `this token lacks the '${need}' scope for ${stream}`);
  return grant;
}

/** Which stream names a request may see; `all`: every stream (no token needed, or the admin). */
export type StreamFilter = ((stream: string) => boolean) & { readonly all: boolean };

const everyStream: StreamFilter = Object.assign(() => true, { all: true });

/**
 * For listings: returns a filter of the stream names the request may see. With
 * no token needed, or for the admin (a session or an admin token), all;
 * otherwise those covered by a valid token's topic.
 */
export async function streamVisibility(c: Context<HttpEnv>, deps: HttpDeps): Promise<StreamFilter> {
  const settings = deps.store.settings;
  const token = tokenFromRequest(c.req.raw, new URL(c.req.url));
  const free = settings.access === "open" || (settings.access === "loopback-open" && isLoopback(accessAddress(c)));
  if (await isAdmin(c, deps, token)) return everyStream;
  if (!token) {
    if (free) return everyStream;
    throw new AppError(401, `a token is required (access policy '${settings.access}'); pass it as ?token= or an Authorization header`);
  }
  try {
    const claims = await verifyStreamToken(deps.verifyKeys, token, settings.public_url || undefined);
    if (claims.booking_id && deps.bookings.isDenied(claims.booking_id)) {
      throw new AppError(403, "booking id has been deny-listed, probably because the session was cancelled");
    }
    return free ? everyStream : Object.assign((stream: string) => claims.scopes.includes("read") && topicCovers(claims.topic, stream), { all: false });
  } catch (err) {
    if (err instanceof TokenError) throw new AppError(401, err.message);
    throw err;
  }
}
