import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { SettingsStore } from "../config/store.ts";
import { ADMIN_PASSWORD_SECRET } from "./admin-account.ts";

/** Name of the session cookie of the admin UI. */
export const SESSION_COOKIE = "switchyard_session";
/** Secret that signs admin sessions. */
export const SESSION_SECRET = "admin_session_secret";
/** How long a sign-in lasts. */
export const SESSION_SECONDS = 7 * 24 * 3600;

/**
 * Admin sessions are stateless: `v1.<expiry>.<password generation>.<hmac>`. The
 * generation is a digest of the password hash, so changing the password signs every
 * session out, on every process, across restarts.
 */
export class AdminSessions {
  constructor(private readonly store: SettingsStore) {}

  private secret(): string {
    return this.store.secret(SESSION_SECRET, () => randomBytes(32).toString("base64url"));
  }

  private generation(): string {
    const hash = this.store.getSecret(ADMIN_PASSWORD_SECRET) ?? "";
    return createHash("sha256").update(hash).digest("base64url").slice(0, 16);
  }

  private sign(body: string): string {
    return createHmac("sha256", this.secret()).update(body).digest("base64url");
  }

  /** A new session value, valid for SESSION_SECONDS from `now` (ms). */
  issue(now = Date.now()): string {
    const body = `v1.${Math.floor(now / 1000) + SESSION_SECONDS}.${this.generation()}`;
    return `${body}.${this.sign(body)}`;
  }

  /** True when `value` is a session this box issued, not expired and not from an older password. */
  valid(value: string | undefined, now = Date.now()): boolean {
    if (!value) return false;
    const parts = value.split(".");
    if (parts.length !== 4 || parts[0] !== "v1") return false;
    const body = parts.slice(0, 3).join(".");
    const want = Buffer.from(this.sign(body));
    const got = Buffer.from(parts[3]!);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return false;
    if (Number(parts[1]) * 1000 <= now) return false;
    return parts[2] === this.generation();
  }
}
