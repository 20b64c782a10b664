import { sign, verify } from "hono/jwt";
import { randomBytes } from "node:crypto";

/** What a stream token lets its holder do: read and write streams. Admin power needs an admin token (admin-token.ts), never a scope. */
export const SCOPES = ["read", "write"] as const;
export type Scope = (typeof SCOPES)[number];

/** The claims of a stream token: practable's, so tokens work on either kind of relay. */
export interface StreamTokenClaims {
  topic: string;
  prefix?: string;
  scopes: string[];
  aud?: string[];
  iat: number;
  nbf: number;
  exp: number;
}

/** Makes a new HS256 signing secret (256 random bits, base64url). */
export function newTokenSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** Options for a new token. */
export interface TokenRequest {
  topic: string;
  scopes: readonly string[];
  ttlSeconds: number;
  audience?: string;
  prefix?: string;
  nowSeconds?: number;
}

/**
 * Signs a stream token with the practable claims: `iat` and `nbf` one second in
 * the past (clock skew), `exp` = iat + ttl, `aud` an array of one URL when given.
 */
export async function signStreamToken(secret: string, req: TokenRequest): Promise<string> {
  const iat = Math.floor(req.nowSeconds ?? Date.now() / 1000) - 1;
  const claims: StreamTokenClaims = {
    topic: req.topic,
    prefix: req.prefix ?? "session",
    scopes: [...req.scopes],
    iat,
    nbf: iat,
    exp: iat + Math.round(req.ttlSeconds),
  };
  if (req.audience) claims.aud = [req.audience];
  return sign(claims as unknown as Record<string, unknown>, secret, "HS256");
}

/** A token that did not verify, with a reason fit to show the client. */
export class TokenError extends Error {
  override name = "TokenError";
}

/**
 * Verifies signature, `exp`, `nbf` and `iat`, and the claim shapes. When
 * `audience` is given and the token has an `aud`, the audience must be in it.
 * Throws TokenError with a reason that says what is wrong.
 */
export async function verifyStreamToken(secret: string, token: string, audience?: string): Promise<StreamTokenClaims> {
  let payload: Record<string, unknown>;
  try {
    payload = (await verify(token, secret, "HS256")) as Record<string, unknown>;
  } catch (err) {
    const name = (err as Error).name;
    const reasons: Record<string, string> = {
      JwtTokenExpired: "token has expired",
      JwtTokenNotBefore: "token is not valid yet (nbf is in the future)",
      JwtTokenIssuedAt: "token is issued in the future (iat)",
      JwtTokenSignatureMismatched: "token signature does not match this server's secret",
      JwtTokenInvalid: "token is not a well-formed JWT",
      JwtHeaderInvalid: "token header is not valid",
      JwtAlgorithmMismatch: "token must be signed with HS256",
    };
    throw new TokenError(reasons[name] ?? `token is not valid: ${(err as Error).message}`);
  }
  if (typeof payload.topic !== "string" || payload.topic === "") throw new TokenError("token has no topic claim");
  if (!Array.isArray(payload.scopes) || !payload.scopes.every((s) => typeof s === "string")) {
    throw new TokenError("token scopes claim must be an array of strings");
  }
  if (typeof payload.exp !== "number") throw new TokenError("token has no exp claim; tokens must expire");
  const aud = typeof payload.aud === "string" ? [payload.aud] : Array.isArray(payload.aud) ? (payload.aud as string[]) : undefined;
  if (audience && aud && !aud.includes(audience)) {
    throw new TokenError(`token audience ${JSON.stringify(aud)} does not include this server (${audience})`);
  }
  return { ...(payload as unknown as StreamTokenClaims), aud };
}

/**
 * True when a token's topic covers the stream: equal, or a topic ending in `*`
 * whose prefix starts the stream name (`spin*` covers `spin30`).
 */
export function topicCovers(topic: string, stream: string): boolean {
  if (topic.endsWith("*")) return stream.startsWith(topic.slice(0, -1));
  return topic === stream;
}
