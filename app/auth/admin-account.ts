import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { SettingsStore } from "../config/store.ts";
import type { Logger } from "../core/logger.ts";

/** Secret holding the admin password's argon2id hash. */
export const ADMIN_PASSWORD_SECRET = "admin_password_hash";
/** File in the data dir holding the generated first password until it is changed. */
export const INITIAL_PASSWORD_FILE = "initial-admin-password";
export const PASSWORD_RULE = "at least 10 characters, at most 200";

const ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789";

/** A new random password: five groups of four letters/digits (about 99 bits), easy to type from a log. */
export function generatePassword(): string {
  const bytes = randomBytes(20);
  const chars = [...bytes].map((b) => ALPHABET[b % ALPHABET.length]!);
  return [0, 4, 8, 12, 16].map((i) => chars.slice(i, i + 4).join("")).join("-");
}

/** What is wrong with a proposed password, or null. */
export function passwordProblem(password: string): string | null {
  if (password.length < 10 || password.length > 200) return `allowed: ${PASSWORD_RULE}`;
  return null;
}

/** Hashes and stores a new admin password; the generated first-password file goes. */
export async function setAdminPassword(store: SettingsStore, dataDir: string, password: string): Promise<void> {
  const problem = passwordProblem(password);
  if (problem) throw new Error(`password: ${problem}`);
  store.setSecret(ADMIN_PASSWORD_SECRET, await Bun.password.hash(password, { algorithm: "argon2id" }));
  rmSync(join(dataDir, INITIAL_PASSWORD_FILE), { force: true });
}

/**
 * On first start (no admin password yet) generates one, stores its hash, writes it to
 * DATA_DIR/initial-admin-password (mode 0600) and logs it once. Returns it, or null
 * when an admin password already exists.
 */
export async function ensureAdminAccount(store: SettingsStore, dataDir: string, logger: Logger): Promise<string | null> {
  if (store.getSecret(ADMIN_PASSWORD_SECRET)) return null;
  const password = generatePassword();
  store.setSecret(ADMIN_PASSWORD_SECRET, await Bun.password.hash(password, { algorithm: "argon2id" }));
  const file = join(dataDir, INITIAL_PASSWORD_FILE);
  writeFileSync(file, password + "\n", { mode: 0o600 });
  logger.warn("first start: admin password generated; sign in at /admin as admin, then change it (switchyard admin password)", { password, file });
  return password;
}

/** True when `password` is the admin password. */
export async function verifyAdminPassword(store: SettingsStore, password: string): Promise<boolean> {
  const hash = store.getSecret(ADMIN_PASSWORD_SECRET);
  if (!hash || password.length > 200) return false;
  try {
    return await Bun.password.verify(password, hash);
  } catch {
    return false;
  }
}
