import { sign, verify } from "hono/jwt";
import { randomBytes } from "node:crypto";

/** What a stream token lets its holder do: read and write streams. Admin power needs an admin token (admin-token.ts), never a scope. */
export const SCOPES = ["read", "write"] as const;
export type Scope = (typeof SCOPES)[number];

/** The claims of a stream token: practable's, so tokens work on either kind of relay. */
export interface StreamTokenClaims {
  /** practable's booking id: a booking system can deny it, dropping its relay sessions. */
  booking_id?: string;
  topic: string;
  prefix?: string;
  scopes: string[];
  aud?: string[];
  iat: number;
  nbf: number;
  exp: number;
}

/** The HMAC algorithms a token may be signed with (practable's relay accepts any HMAC). */
export const TOKEN_ALGORITHMS = ["HS256", "HS384", "HS512"] as const;
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];

/**
 * The secrets a token may be signed with: one, several (this box's own and an
 * imported practable relay secret), or a function that answers them live.
 */
export type VerifyKeys = string | readonly string[] | (() => readonly string[]);

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
  /** practable's booking_id claim (its `relay token` puts "relay-token-cli" when none is given). */
  bookingId?: string;
  nowSeconds?: number;
}

/** The longest lifetime a token is signed for, 100 years (a far-off exp only breaks the tools that show it). */
export const MAX_TOKEN_TTL_SECONDS = 100 * 31_536_000;

/**
 * Signs a stream token with the practable claims, in the order practable's
 * `relay token` writes them (booking_id when given, topic, prefix, scopes, aud,
 * exp, nbf, iat): `iat` and `nbf` one second in the past (clock skew), `exp` =
 * iat + ttl, `aud` an array of one URL when given.
 */
export async function signStreamToken(secret: string, req: TokenRequest): Promise<string> {
  const iat = Math.floor(req.nowSeconds ?? Date.now() / 1000) - 1;
  const claims: Record<string, unknown> = {};
  if (req.bookingId !== undefined) claims.booking_id = req.bookingId;
  claims.topic = req.topic;
  claims.prefix = req.prefix ?? "session";
  claims.scopes = [...req.scopes];
  if (req.audience) claims.aud = [req.audience];
  claims.exp = iat + Math.round(req.ttlSeconds);
  claims.nbf = iat;
  claims.iat = iat;
  return sign(claims, secret, "HS256");
}

/** The `alg` of a token's header, or null when the header cannot be read. */
function tokenAlgorithm(token: string): string | null {
  try {
    const header = JSON.parse(Buffer.from(token.split(".")[0] ?? "", "base64url").toString()) as { alg?: unknown };
    return typeof header.alg === "string" ? header.alg : null;
  } catch {
    return null;
  }
}

/** `aud` as a list: a string or an array of strings; anything else (an object, a number) is refused. */
function audienceList(aud: unknown): string[] | undefined {
  if (aud === undefined) return undefined;
  if (typeof aud === "string") return [aud];
  if (Array.isArray(aud) && aud.every((a) => typeof a === "string")) return aud as string[];
  throw new TokenError("token aud claim must be a string or an array of strings");
}

/** A token that did not verify, with a reason fit to show the client. */
export class TokenError extends Error {
  override name = "TokenError";
}

/**
 * Verifies signature (HS256, HS384 or HS512, with any of `keys`), `exp`, `nbf`
 * and `iat`, and the claim shapes (`aud` a string or an array of strings,
 * `booking_id` and `prefix` strings). When `audience` is given (one URL or
 * several) and the token has an `aud`, one of them must be in it. Throws
 * TokenError with a reason that says what is wrong.
 */
export async function verifyStreamToken(keys: VerifyKeys, token: string, audience?: string | readonly string[], opts: { topicOptional?: boolean } = {}): Promise<StreamTokenClaims> {
  const alg = tokenAlgorithm(token);
  if (alg === null) throw new TokenError("token is not a well-formed JWT");
  if (!(TOKEN_ALGORITHMS as readonly string[]).includes(alg)) throw new TokenError(`token must be signed with HMAC (${TOKEN_ALGORITHMS.join(", ")}); this one says ${JSON.stringify(alg)}`);
  const secrets = typeof keys === "string" ? [keys] : typeof keys === "function" ? keys() : keys;
  let payload: Record<string, unknown> | null = null;
  try {
    for (const [i, secret] of secrets.entries()) {
      try {
        payload = (await verify(token, secret, alg as TokenAlgorithm)) as Record<string, unknown>;
        break;
      } catch (err) {
        // Another secret may have signed it; only the last mismatch is the answer.
        if ((err as Error).name !== "JwtTokenSignatureMismatched" || i === secrets.length - 1) throw err;
      }
    }
    if (payload === null) throw new TokenError("no secret to verify the token with");
  } catch (err) {
    if (err instanceof TokenError) throw err;
    const name = (err as Error).name;
    const reasons: Record<string, string> = {
      JwtTokenExpired: "token has expired",
      JwtTokenNotBefore: "token is not valid yet (nbf is in the future)",
      JwtTokenIssuedAt: "token is issued in the future (iat)",
      JwtTokenSignatureMismatched: "token signature does not match this server's secret",
      JwtTokenInvalid: "token is not a well-formed JWT",
      JwtHeaderInvalid: "token header is not valid",
      JwtAlgorithmMismatch: `token must be signed with HMAC (${TOKEN_ALGORITHMS.join(", ")})`,
    };
    throw new TokenError(reasons[name] ?? `token is not valid: ${(err as Error).message}`);
  }
  // practable's relay:admin tokens (booking control) may carry an empty topic; stream tokens may not.
  if (typeof payload.topic !== "string" || (payload.topic === "" && !opts.topicOptional)) throw new TokenError("token has no topic claim");
  if (!Array.isArray(payload.scopes) || !payload.scopes.every((s) => typeof s === "string")) {
    throw new TokenError("token scopes claim must be an array of strings");
  }
  if (typeof payload.exp !== "number") throw new TokenError("token has no exp claim; tokens must expire");
  const aud = audienceList(payload.aud);
  if (payload.booking_id !== undefined && typeof payload.booking_id !== "string") throw new TokenError("token booking_id claim must be a string");
  if (payload.prefix !== undefined && typeof payload.prefix !== "string") throw new TokenError("token prefix claim must be a string");
  const expected = audience === undefined ? [] : typeof audience === "string" ? [audience] : audience;
  const wanted = expected.filter(Boolean).map((a) => a.replace(/\/+$/, ""));
  if (wanted.length > 0 && aud && !aud.some((a) => wanted.includes(a.replace(/\/+$/, "")))) {
    throw new TokenError(`token audience ${JSON.stringify(aud)} does not include this server (${wanted.join(" or ")})`);
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
