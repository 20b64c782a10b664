import { isIP } from "node:net";
import type { AccessPolicy } from "../config/settings.ts";
import { topicCovers, TokenError, verifyStreamToken, type VerifyKeys } from "./stream-token.ts";

/** What a client may do on a stream. */
export interface Grant {
  read: boolean;
  write: boolean;
  /** Token expiry, seconds since the epoch, when a token was used. */
  exp?: number;
  /** Why access was given: by the policy, for a loopback client, by a token, or to the admin (session or admin token). */
  via: "open" | "loopback" | "token" | "admin";
  /** The token's booking id, when it has one (a deny of that booking closes the connection). */
  bookingId?: string;
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

/** An address from a forwarding header entry: an IP, without port or brackets ("" when it is none). */
function forwardedAddress(entry: string): string {
  let a = entry.trim().replace(/^"|"$/g, "");
  if (a.startsWith("[")) a = a.slice(1, a.indexOf("]") > 0 ? a.indexOf("]") : undefined);
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(a)) a = a.slice(0, a.lastIndexOf(":"));
  return isIP(a) ? a : "";
}

/** The `for=` addresses of a Forwarded header (RFC 7239), in order. */
function forwardedFor(header: string): string[] {
  const out: string[] = [];
  for (const element of header.split(",")) {
    for (const pair of element.split(";")) {
      const eq = pair.indexOf("=");
      if (eq > 0 && pair.slice(0, eq).trim().toLowerCase() === "for") out.push(pair.slice(eq + 1));
    }
  }
  return out;
}

/**
 * Who sent a request, for sign-in limits and logs: the peer, unless the peer is
 * one of the operator's trusted proxies; then the client its forwarding headers
 * name: the right-most X-Forwarded-For (or Forwarded for=) entry that is not
 * itself a trusted proxy (entries left of it are whatever the client wrote), else
 * X-Real-IP. Headers from any other peer are ignored: a client cannot pick its own
 * address by sending them.
 */
export function forwardedClient(req: Request, peer: string, trusted: (address: string) => boolean): string {
  if (!peer || !trusted(peer)) return peer;
  const chain = [
    ...(req.headers.get("x-forwarded-for")?.split(",") ?? []),
    ...forwardedFor(req.headers.get("forwarded") ?? ""),
  ].map(forwardedAddress);
  for (let i = chain.length - 1; i >= 0; i--) {
    const a = chain[i]!;
    if (a === "") return peer; // an entry that is not an address: trust stops here
    if (!trusted(a)) return a;
  }
  const real = forwardedAddress(req.headers.get("x-real-ip") ?? "");
  return real || peer;
}

/**
 * The scheme the client used ("https" or "http"): the request's own, unless the
 * peer is a trusted proxy that says otherwise (X-Forwarded-Proto, or Forwarded
 * proto=). From anyone else the headers are ignored.
 */
export function forwardedScheme(req: Request, peer: string, trusted: (address: string) => boolean): "http" | "https" {
  const own = new URL(req.url).protocol === "https:" ? "https" : "http";
  if (!peer || !trusted(peer)) return own;
  const xfp = req.headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase();
  const fwd = /(?:^|[;,\s])proto=("?)(https?)\1/i.exec(req.headers.get("forwarded") ?? "")?.[2]?.toLowerCase();
  const said = xfp ?? fwd;
  return said === "https" || said === "http" ? said : own;
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
  /** True for a booking id on the deny list: a token carrying it is refused. */
  isDenied?: (bookingId: string) => boolean;
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
  const bid = claims.booking_id;
  if (bid && req.isDenied?.(bid)) {
    throw new AccessDenied("booking id has been deny-listed, probably because the session was cancelled", 403);
  }
  const read = claims.scopes.includes("read");
  const write = claims.scopes.includes("write");
  const booking = bid ? { bookingId: bid } : {};
  if (free) return { ...free, exp: claims.exp, ...booking };
  return { read, write, exp: claims.exp, via: "token", ...booking };
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
