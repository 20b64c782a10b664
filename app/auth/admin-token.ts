import { sign, verify } from "hono/jwt";
import type { SettingsStore } from "../config/store.ts";
import { newTokenSecret, TokenError } from "./stream-token.ts";

/**
 * Admin tokens: what scripts, Grafana and the CLI use instead of a session.
 * They are signed with their own key (the store's `admin_token_secret`), never
 * with the stream-token secret, which a lab may share with a practable relay and
 * whose tokens go to devices: no device token, whatever its scopes, is an admin
 * token. The `typ` claim says what the token is, so the two kinds cannot be mixed
 * up even by a reader that checks only claims.
 */

/** Name of the admin-token signing secret in the settings store. */
export const ADMIN_TOKEN_SECRET = "admin_token_secret";
/** The `typ` claim of every admin token. */
export const ADMIN_TOKEN_TYPE = "switchyard-admin";

/** The admin-token signing secret of a store (made on first use). */
export function adminTokenSecret(store: SettingsStore): string {
  return store.secret(ADMIN_TOKEN_SECRET, newTokenSecret);
}

/** Makes every admin token signed so far stop working (a new signing secret). */
export function revokeAdminTokens(store: SettingsStore): void {
  store.setSecret(ADMIN_TOKEN_SECRET, newTokenSecret());
}

/** Signs an admin token valid for `ttlSeconds` (iat and nbf one second back, for clock skew). */
export async function signAdminToken(secret: string, ttlSeconds: number, nowSeconds = Date.now() / 1000): Promise<string> {
  const iat = Math.floor(nowSeconds) - 1;
  return sign({ typ: ADMIN_TOKEN_TYPE, sub: "admin", iat, nbf: iat, exp: iat + Math.round(ttlSeconds) }, secret, "HS256");
}

/** True when `token` is an admin token signed with `secret`, in its time; throws TokenError saying why not. */
export async function verifyAdminToken(secret: string, token: string): Promise<true> {
  let payload: Record<string, unknown>;
  try {
    payload = (await verify(token, secret, "HS256")) as Record<string, unknown>;
  } catch (err) {
    const name = (err as Error).name;
    if (name === "JwtTokenExpired") throw new TokenError("admin token has expired; make a new one with switchyard token --admin");
    if (name === "JwtTokenSignatureMismatched") throw new TokenError("not an admin token of this box (stream tokens never give admin power; make one with switchyard token --admin)");
    throw new TokenError(`not a valid admin token (${name.replace(/^Jwt/, "")})`);
  }
  if (payload.typ !== ADMIN_TOKEN_TYPE) throw new TokenError(`not an admin token: its typ claim is ${JSON.stringify(payload.typ ?? null)}, not ${JSON.stringify(ADMIN_TOKEN_TYPE)}`);
  if (typeof payload.exp !== "number") throw new TokenError("admin token has no exp claim; tokens must expire");
  return true;
}
