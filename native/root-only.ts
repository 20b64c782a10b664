import { existsSync, lstatSync, realpathSync, statSync, type Stats } from "node:fs";
import { dirname } from "node:path";

/**
 * Root's own folder for DuckDB's library, used when the configured one (for
 * example the data dir's cache, which the service user owns) is not root-only.
 * `install.sh` unpacks the installed version there too.
 */
export const ROOT_NATIVE_DIR = "/var/cache/switchyard";

/** True when this process runs as root (euid 0): it may load code only from root-only paths. */
export function runningAsRoot(): boolean {
  return process.geteuid?.() === 0;
}

/**
 * Why `st` (the entry at one step of a path) could be changed by someone other
 * than root, or null. A root-owned sticky folder that others may write (/tmp)
 * is fine above the last step: only root may rename or replace what root put in it.
 */
function whyNotRootOnlyStep(st: Stats, last: boolean): string | null {
  if (st.uid !== 0) return `is owned by uid ${st.uid}, not root`;
  if (st.isDirectory() && st.mode & 0o1000 && !last) return null;
  if (st.mode & 0o002) return "is writable by every user";
  if (st.mode & 0o020 && st.gid !== 0) return `is writable by group ${st.gid}`;
  return null;
}

/** Why the file `st` (lstat'ed) could be changed by a user other than root, or null. */
export function whyNotRootOnlyFile(st: Stats): string | null {
  if (!st.isFile()) return "is not a regular file";
  return whyNotRootOnlyStep(st, true);
}

/**
 * Why code at `path` could be changed by a user other than root (the reason,
 * naming the first folder or file on the way from / that allows it), or null
 * when only root can change it. Symbolic links are resolved first: what counts
 * is the path the loader will open, which the caller gets from `realpathSync`.
 */
export function whyNotRootOnly(path: string): string | null {
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    return `${path} cannot be resolved (${(err as Error).message})`;
  }
  const parts = real.split("/").filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const step = "/" + parts.slice(0, i).join("/");
    const why = whyNotRootOnlyStep(lstatSync(step), i === parts.length);
    if (why) return `${step} ${why}`;
  }
  return null;
}

/** The nearest folder of `path` (itself or a parent) that exists. */
export function nearestExisting(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

/**
 * The folder a root process may unpack and load DuckDB's library under:
 * `configured` when only root can change it (and whatever root creates below
 * it), else `fallback` (root's own, /var/cache/switchyard). Throws, saying why
 * and what to do, when neither is root-only.
 */
export function rootNativeBase(configured: string, fallback = ROOT_NATIVE_DIR): string {
  const existing = nearestExisting(configured);
  // Not a folder (a file on the way): unpacking there fails with its own clear error, and nothing is loaded.
  if (!statSync(existing).isDirectory()) return configured;
  const why = whyNotRootOnly(existing);
  if (why === null) return configured;
  const whyFallback = whyNotRootOnly(nearestExisting(fallback));
  if (whyFallback === null) return fallback;
  throw new Error(
    `refusing to load DuckDB's native library as root from ${configured}: ${why}, so another user could put their own code there; ` +
    `root's own folder ${fallback} cannot be used either: ${whyFallback}. ` +
    "Run this command as the user that owns the data folder (e.g. sudo -u switchyard switchyard …), " +
    "or set SWITCHYARD_NATIVE_DIR to a folder that only root can write (owned by root, not writable by group or others, nor any folder above it)",
  );
}
