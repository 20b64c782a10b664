import type { AccessPolicy } from "../config/settings.ts";
import { topicCovers, TokenError, verifyStreamToken, type VerifyKeys } from "./stream-token.ts";

/** What a client may do on a stream. */
export interface Grant {
  read: boolean;
  write: boolean;
  /** Token expiry, seconds since the epoch, when a token was used. */
  exp?: number;
  /** Why access was given: by the policy, for a loopback client, or by a token. */
  via: "open" | "loopback" | "token";
}

/** Access was refused; `reason` is safe and useful to show the client. */
export class AccessDenied extends Error {
  override name = "AccessDenied";
  constructor(readonly reason: string, readonly status: 401 | 403) {
    super(reason);
  }
}

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback(address: string): boolean {
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return a === "::1" || a.startsWith("127.");
}

const PROXY_HEADERS = ["forwarded", "x-forwarded-for", "x-real-ip"];

/** True for a host name that cannot be rebound by DNS: localhost, or an IP literal. */
function fixedHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || /^\[[0-9a-f:.]+\]$/.test(h);
}

/** The host name of a Host header or an Origin, or null. */
function hostnameOf(value: string, isOrigin: boolean): string | null {
  try {
    return new URL(isOrigin ? value : `http://${value}`).hostname;
  } catch {
    return null;
  }
}

/**
 * The address to judge a client by: its peer address, or "" (never loopback) when
 *  - the request came through a proxy (a reverse proxy on the same box, for TLS,
 *    connects from 127.0.0.1; its clients are not local);
 *  - its Host is a name DNS could point anywhere (a DNS-rebinding page in a browser
 *    on the box would reach us as "evil.example"): local clients say localhost or an IP;
 *  - a browser sent it from a page of another site (its Origin is not this Host):
 *    a web page must not get the box's loopback trust.
 */
export function clientAddress(req: Request, peer: string): string {
  for (const h of PROXY_HEADERS) if (req.headers.has(h)) return "";
  const host = req.headers.get("host");
  const hostname = host ? hostnameOf(host, false) : null;
  if (host && (hostname === null || !fixedHost(hostname))) return "";
  const origin = req.headers.get("origin");
  if (origin !== null && (!host || hostnameOf(origin, true) === null || new URL(origin).host !== host)) return "";
  return peer;
}

/** Everything the access decision needs, passed in by the caller. */
export interface AccessRequest {
  policy: AccessPolicy;
  remoteAddress: string;
  token: string | null;
  stream: string;
  secret: VerifyKeys;
  /** This server's public URL; a token with an audience must name it. */
  audience?: string;
}

/**
 * Decides what a client may do on a stream. A token, when given, must verify
 * (even where the policy would let the client in without one) and its topic must
 * cover the stream; its scopes add to what the policy allows.
 */
export async function authorizeStream(req: AccessRequest): Promise<Grant> {
  const free: Grant | null =
    req.policy === "open" ? { read: true, write: true, via: "open" }
    : req.policy === "loopback-open" && isLoopback(req.remoteAddress) ? { read: true, write: true, via: "loopback" }
    : null;
  if (req.token === null) {
    if (free) return free;
    const why = req.policy === "token" ? "access policy 'token'" : "access policy 'loopback-open' and the client is not on loopback";
    throw new AccessDenied(`a token is required (${why}); pass it as ?token=, an Authorization header or the subprotocol token.<jwt>`, 401);
  }
  let claims;
  try {
    claims = await verifyStreamToken(req.secret, req.token, req.audience || undefined);
  } catch (err) {
    if (err instanceof TokenError) throw new AccessDenied(err.message, 401);
    throw err;
  }
  if (!topicCovers(claims.topic, req.stream)) {
    throw new AccessDenied(`token is for topic ${JSON.stringify(claims.topic)}, not stream ${JSON.stringify(req.stream)}`, 403);
  }
  const read = claims.scopes.includes("read");
  const write = claims.scopes.includes("write");
  if (free) return { ...free, exp: claims.exp };
  return { read, write, exp: claims.exp, via: "token" };
}

/**
 * Finds a token in a request: `?token=`, `Authorization: Bearer <jwt>` or a raw
 * `Authorization: <jwt>` (practable style), or a websocket subprotocol `token.<jwt>`.
 */
export function tokenFromRequest(req: Request, url: URL): string | null {
  const q = url.searchParams.get("token");
  if (q) return q;
  const auth = req.headers.get("authorization");
  if (auth) return auth.replace(/^Bearer\s+/i, "").trim();
  const protocols = req.headers.get("sec-websocket-protocol");
  if (protocols) {
    for (const p of protocols.split(",")) {
      const t = p.trim();
      if (t.startsWith("token.")) return t.slice(6);
    }
  }
  return null;
}
