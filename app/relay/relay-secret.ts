import { createHash } from "node:crypto";
import type { SettingsStore } from "../config/store.ts";

/** Name of the imported practable relay secret in the settings store. */
export const RELAY_SECRET_NAME = "practable_relay_secret";

/** Where the imported relay secret comes from. */
export type RelaySecretSource = "env" | "store" | null;

/**
 * The imported practable relay secret: SWITCHYARD_RELAY_SECRET (passed in as
 * `fromEnv`) wins over the one stored with `switchyard secret set` or the
 * Tokens page. Tokens signed with it work on /ws, /session and the access step
 * as if this box had signed them.
 */
export function relaySecret(fromEnv: string | null | undefined, store: SettingsStore): { secret: string | null; source: RelaySecretSource } {
  if (fromEnv) return { secret: fromEnv, source: "env" };
  const stored = store.getSecret(RELAY_SECRET_NAME);
  return stored ? { secret: stored, source: "store" } : { secret: null, source: null };
}

/** What a secret may look like: practable uses the bytes of the string as the HMAC key. */
export function relaySecretProblem(secret: string): string | null {
  if (secret.length < 8) return "the secret is shorter than 8 characters; paste the relay's whole secret (its RELAY_TOKEN_SECRET / ACCESSTOKEN_SECRET)";
  if (secret.length > 4096) return "the secret is longer than 4096 characters";
  if (/[\r\n]/.test(secret)) return "the secret holds a line break; give it without one";
  return null;
}

/** A short fingerprint that tells two secrets apart without showing either (first 12 hex of SHA-256). */
export function secretFingerprint(secret: string): string {
  return createHash("sha256").update(secret).digest("hex").slice(0, 12);
}

/** What the API and the admin UI show of the imported relay secret: whether it is set, from where, a fingerprint; never the secret. */
export function relaySecretView(fromEnv: string | null | undefined, store: SettingsStore): { set: boolean; source: RelaySecretSource; fingerprint: string | null } {
  const { secret, source } = relaySecret(fromEnv, store);
  return { set: secret !== null, source, fingerprint: secret ? secretFingerprint(secret) : null };
}
