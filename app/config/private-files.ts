import { chmodSync, mkdirSync, statSync } from "node:fs";
import type { Logger } from "../core/logger.ts";

/**
 * Files the process creates are private to its user, whatever umask it was
 * started with: the spool, settings, logs and exports hold every message and
 * the secrets. Call first thing in a command.
 */
export function privateUmask(): void {
  process.umask(0o077);
}

/**
 * Makes sure the data dir exists and other users cannot enter it: created 0700;
 * an existing one that others may read or enter (e.g. 0755 from an older
 * checkout-mode start) is tightened to 0700, with a warning; if that fails
 * (another owner), the warning says how to fix it. Group access set on purpose
 * (the installer's 0750) is left alone.
 */
export function securePrivateDataDir(dir: string, logger: Logger): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mode = statSync(dir).mode & 0o777;
  if ((mode & 0o007) === 0) return;
  const was = mode.toString(8).padStart(4, "0");
  try {
    chmodSync(dir, 0o700);
    logger.warn("data dir was open to other users; tightened to 0700", { dir, was });
  } catch (err) {
    logger.warn("data dir is open to other users and could not be tightened: run chmod 700 on it", { dir, mode: was, error: err });
  }
}
