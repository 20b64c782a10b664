import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { SettingsStore } from "../config/store.ts";
import { ADMIN_PASSWORD_SECRET } from "./admin-account.ts";

/** Name of the session cookie of the admin UI. */
export const SESSION_COOKIE = "switchyard_session";
/** Secret that signs admin sessions. */
export const SESSION_SECRET = "admin_session_secret";
/** How long a sign-in lasts. */
export const SESSION_SECONDS = 7 * 24 * 3600;
/** Secret holding the sessions signed out before they expired. */
const REVOKED_SECRET = "admin_revoked_sessions";

/**
 * Admin sessions are signed values, `v1.<expiry>.<password generation>.<id>.<hmac>`.
 * The generation is a digest of the password hash, so changing the password signs
 * every session out, on every process, across restarts. Signing out puts the
 * session's id on a list (kept in the store until the session would have expired).
 */
export class AdminSessions {
  private revoked: Map<string, number>;

  constructor(private readonly store: SettingsStore) {
    let list: [string, number][] = [];
    try {
      list = JSON.parse(store.getSecret(REVOKED_SECRET) ?? "[]");
    } catch {
      list = [];
    }
    this.revoked = new Map(list);
  }

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
    const body = `v1.${Math.floor(now / 1000) + SESSION_SECONDS}.${this.generation()}.${randomBytes(12).toString("base64url")}`;
    return `${body}.${this.sign(body)}`;
  }

  /** Signs one session out for good (its cookie stops working everywhere). */
  revoke(value: string | undefined, now = Date.now()): void {
    if (!value || !this.valid(value, now)) return;
    const [, exp, , id] = value.split(".");
    const nowSeconds = now / 1000;
    for (const [k, e] of this.revoked) if (e <= nowSeconds) this.revoked.delete(k);
    this.revoked.set(id!, Number(exp));
    this.store.setSecret(REVOKED_SECRET, JSON.stringify([...this.revoked]));
  }

  /** True when `value` is a session this box issued, not expired and not from an older password. */
  valid(value: string | undefined, now = Date.now()): boolean {
    if (!value) return false;
    const parts = value.split(".");
    if (parts.length !== 5 || parts[0] !== "v1") return false;
    const body = parts.slice(0, 4).join(".");
    const want = Buffer.from(this.sign(body));
    const got = Buffer.from(parts[4]!);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return false;
    if (Number(parts[1]) * 1000 <= now) return false;
    return parts[2] === this.generation() && !this.revoked.has(parts[3]!);
  }
}
