import type { Server } from "bun";
import { verifyStreamToken, TokenError, type StreamTokenClaims, type VerifyKeys } from "../auth/stream-token.ts";
import type { Settings } from "../config/settings.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import { newConnection, type Connection } from "../hub/connection.ts";
import { acceptUpgrade, CLOSE } from "./websocket.ts";
import type { BookingControl } from "../relay/bookings.ts";

/** How long an access code may wait to be used. */
const CODE_TTL_MS = 30_000;

/** The path prefix of relay sessions. */
export const SESSION_PREFIX = "/session/";

interface Pending {
  topic: string;
  claims: StreamTokenClaims;
  expires: number;
}

/** What the session server needs. */
export interface SessionServerOptions {
  /** The secrets tokens may be signed with: this box's own and the imported practable relay secret. */
  keys: VerifyKeys;
  settings: () => Settings;
  /** This box's own base URLs (http://127.0.0.1:PORT, …): the audience when public_url is empty. */
  localBases: () => readonly string[];
  bookings?: BookingControl;
}

/**
 * The audiences a token must name and the websocket base of this relay. The
 * audience is public_url, or without it this box's own listening URLs
 * (`localBases`): never the request's Host header, which the client chooses.
 * The websocket base the answer points at is public_url, else where the request
 * came to (a client that lies about Host only sends itself astray).
 */
function relayBase(req: Request, settings: Settings, localBases: () => readonly string[], scheme?: "http" | "https"): { audiences: readonly string[]; wsBase: string } {
  const url = new URL(req.url);
  const publicUrl = settings.public_url.replace(/\/+$/, "");
  const here = `${scheme ? `${scheme}:` : url.protocol}//${req.headers.get("host") ?? url.host}`;
  return { audiences: publicUrl ? [publicUrl] : localBases(), wsBase: (publicUrl || here).replace(/^http/, "ws") };
}

/** practable's answer to an access request refused for its booking id. */
function badBooking(message: string): Response {
  return Response.json({ code: 400, message }, { status: 400 });
}

/** practable's answer to a refused access request (with our reason beside it). */
function unauthenticated(detail: string): Response {
  return Response.json({ code: 401, message: "unauthenticated for invalid credentials", detail }, { status: 401 });
}

/**
 * The relay server side of a practable session: `POST /session/{topic}` with a
 * token answers a single-use websocket URI valid 30 s; `GET /session/{topic}?code=`
 * upgrades to a connection on the local stream `{topic}` with the token's scopes.
 */
export class SessionServer {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly opts: SessionServerOptions) {
    // A denied booking's codes are dropped at once, as practable's relay does.
    opts.bookings?.onDeny((bid) => {
      for (const [code, p] of this.pending) if (p.claims.booking_id === bid) this.pending.delete(code);
    });
  }

  /**
   * POST /session/{topic}: checks the token and hands out an access code.
   * `scheme` is the one the client used, when a trusted proxy says so (https gives a wss:// uri).
   */
  async access(req: Request, topic: string, scheme?: "http" | "https"): Promise<Response> {
    const header = req.headers.get("authorization");
    if (!header) return unauthenticated("no Authorization header; send the token as Authorization: <jwt>");
    const problem = streamNameProblem(topic);
    if (problem) return unauthenticated(`topic: ${problem}`);
    const { audiences, wsBase } = relayBase(req, this.opts.settings(), this.opts.localBases, scheme);
    let claims: StreamTokenClaims;
    try {
      claims = await verifyStreamToken(this.opts.keys, header.replace(/^Bearer\s+/i, "").trim(), audiences);
    } catch (err) {
      if (err instanceof TokenError) return unauthenticated(err.message);
      throw err;
    }
    // practable's required claims: topic, scopes, prefix, aud, exp (the last checked by verify).
    if (!claims.aud || claims.aud.length === 0) return unauthenticated(`token has no audience; it must name ${audiences.join(" or ")}`);
    if (claims.scopes.length === 0) return unauthenticated("token has no scopes");
    if (claims.topic !== topic) return unauthenticated(`token is for topic ${JSON.stringify(claims.topic)}, not ${JSON.stringify(topic)}`);
    if (claims.prefix !== "session") return unauthenticated(claims.prefix === undefined ? 'token has no prefix claim; a relay session token has "prefix":"session"' : `token prefix ${JSON.stringify(claims.prefix)} is not "session"`);
    // No booking id is accepted (as practable's relay with "allow no booking id"): older tokens have none.
    const bid = claims.booking_id;
    if (bid && this.opts.bookings) {
      if (this.opts.bookings.isDenied(bid)) return badBooking("bookingID has been deny-listed, probably because the session was cancelled");
      this.opts.bookings.allow(bid, claims.exp);
    }
    this.sweep();
    const code = crypto.randomUUID();
    this.pending.set(code, { topic, claims, expires: Date.now() + CODE_TTL_MS });
    return Response.json({ uri: `${wsBase}${SESSION_PREFIX}${encodeURIComponent(topic)}?code=${code}` });
  }

  /** GET /session/{topic}?code=: upgrades; a bad, used or expired code gets a close frame saying so. */
  upgrade(req: Request, url: URL, topic: string, server: Server<Connection>): Response | undefined {
    const code = url.searchParams.get("code") ?? "";
    const p = this.pending.get(code);
    this.pending.delete(code); // single use, whatever happens next
    const ip = server.requestIP(req);
    const origin = `session:${ip?.address ?? ""}:${ip?.port ?? 0}`;
    const none = { read: false, write: false, via: "token" as const };
    if (!p || p.expires < Date.now()) {
      const why = !code ? "no access code; POST /session/{topic} with a token first" : "access code is unknown, already used or expired (codes are single-use and last 30 s)";
      return acceptUpgrade(req, url, server, newConnection(topic, origin, none, { code: CLOSE.policy, reason: why }));
    }
    if (p.topic !== topic) {
      return acceptUpgrade(req, url, server, newConnection(topic, origin, none, { code: CLOSE.policy, reason: `access code is for topic ${p.topic}, not ${topic}` }));
    }
    if (p.claims.booking_id && this.opts.bookings?.isDenied(p.claims.booking_id)) {
      return acceptUpgrade(req, url, server, newConnection(topic, origin, none, { code: CLOSE.policy, reason: "booking id has been deny-listed, probably because the session was cancelled" }));
    }
    const grant = { read: p.claims.scopes.includes("read"), write: p.claims.scopes.includes("write"), exp: p.claims.exp, via: "token" as const };
    const conn = newConnection(topic, origin, grant);
    if (p.claims.booking_id) conn.bookingId = p.claims.booking_id;
    return acceptUpgrade(req, url, server, conn);
  }

  /** The audiences a token for this relay must name: public_url, or this box's own listening URLs. */
  audiences(): readonly string[] {
    const publicUrl = this.opts.settings().public_url.replace(/\/+$/, "");
    return publicUrl ? [publicUrl] : this.opts.localBases();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [code, p] of this.pending) if (p.expires < now) this.pending.delete(code);
  }
}
