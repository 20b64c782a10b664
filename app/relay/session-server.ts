import type { Server } from "bun";
import { verifyStreamToken, TokenError, type StreamTokenClaims } from "../auth/stream-token.ts";
import type { Settings } from "../config/settings.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import { newConnection, type Connection } from "../hub/connection.ts";
import { acceptUpgrade, CLOSE } from "../hub/websocket.ts";

/** How long an access code may wait to be used. */
const CODE_TTL_MS = 30_000;

/** The path prefix of relay sessions. */
export const SESSION_PREFIX = "/session/";

interface Pending {
  topic: string;
  claims: StreamTokenClaims;
  expires: number;
}

/** The audience a token must name, and the websocket base of this relay: from public_url, else from the request. */
function relayBase(req: Request, settings: Settings): { audience: string; wsBase: string } {
  const url = new URL(req.url);
  const base = settings.public_url || `${url.protocol}//${req.headers.get("host") ?? url.host}`;
  const trimmed = base.replace(/\/+$/, "");
  return { audience: trimmed, wsBase: trimmed.replace(/^http/, "ws") };
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

  constructor(private readonly secret: string, private readonly settings: () => Settings) {}

  /** POST /session/{topic}: checks the token and hands out an access code. */
  async access(req: Request, topic: string): Promise<Response> {
    const header = req.headers.get("authorization");
    if (!header) return unauthenticated("no Authorization header; send the token as Authorization: <jwt>");
    const problem = streamNameProblem(topic);
    if (problem) return unauthenticated(`topic: ${problem}`);
    const { audience, wsBase } = relayBase(req, this.settings());
    let claims: StreamTokenClaims;
    try {
      claims = await verifyStreamToken(this.secret, header.replace(/^Bearer\s+/i, "").trim(), audience);
    } catch (err) {
      if (err instanceof TokenError) return unauthenticated(err.message);
      throw err;
    }
    if (!claims.aud) return unauthenticated(`token has no audience; it must name ${audience}`);
    if (claims.topic !== topic) return unauthenticated(`token is for topic ${JSON.stringify(claims.topic)}, not ${JSON.stringify(topic)}`);
    if (claims.prefix !== undefined && claims.prefix !== "session") return unauthenticated(`token prefix ${JSON.stringify(claims.prefix)} is not "session"`);
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
    const grant = { read: p.claims.scopes.includes("read"), write: p.claims.scopes.includes("write"), exp: p.claims.exp, via: "token" as const };
    return acceptUpgrade(req, url, server, newConnection(topic, origin, grant));
  }

  private sweep(): void {
    const now = Date.now();
    for (const [code, p] of this.pending) if (p.expires < now) this.pending.delete(code);
  }
}
