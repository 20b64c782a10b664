import { createHash } from "node:crypto";
import { chmodSync, closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import type { EmbeddedNative } from "./embedded.ts";
import { whyNotRootOnly, whyNotRootOnlyFile } from "./root-only.ts";

/** Where the native files were put, and what this call had to do. */
export interface NativeDir {
  dir: string;
  /** The files written by this call (empty when the folder was reused). */
  unpacked: string[];
  /** How reused files were checked: `hash` (size and SHA-256) or `stamp` (size, mtime, inode as at the last hash check). */
  checked: "hash" | "stamp" | "none";
}

const STAMP = ".verified.json";
type Stamp = Record<string, { size: number; mtimeMs: number; ino: number; sha256: string }>;

/**
 * The folder native libraries are unpacked under: `SWITCHYARD_NATIVE_DIR`, else
 * `$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`.
 */
export function nativeCacheBase(env: Record<string, string | undefined> = process.env): string {
  if (env.SWITCHYARD_NATIVE_DIR) return env.SWITCHYARD_NATIVE_DIR;
  if (env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME)) return join(env.XDG_CACHE_HOME, "switchyard");
  let home = env.HOME;
  if (!home) try { home = homedir(); } catch { /* no home */ }
  if (home) return join(home, ".cache", "switchyard");
  throw new Error("no folder to unpack DuckDB's native library into: set SWITCHYARD_NATIVE_DIR (or XDG_CACHE_HOME, or HOME) to a writable folder");
}

/** The versioned folder for `e` under `base`: `duckdb-<version>-<platform>-<hash of the files>`. */
export function nativeDirFor(e: EmbeddedNative, base: string): string {
  const id = createHash("sha256").update(e.files.map((f) => `${f.name}:${f.sha256}`).join("\n")).digest("hex").slice(0, 12);
  return join(base, `duckdb-${e.version}-${e.platform}-${id}`);
}

/** SHA-256 of a file on disk, read in 1 MiB chunks (no whole-file buffer). */
export function sha256File(path: string): string {
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 20);
  const fd = openSync(path, "r");
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

function readStamp(dir: string): Stamp {
  try {
    return JSON.parse(readFileSync(join(dir, STAMP), "utf8")) as Stamp;
  } catch {
    return {};
  }
}

/** Writes `data` to `path` through a temp file and a rename, so a reader never sees half a file. */
function writeAtomic(path: string, data: Uint8Array, mode: number): void {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const fd = openSync(tmp, "w", mode);
  try {
    for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/** Removes temp files a killed process left behind (older than 10 minutes, so not another process's live one). */
function removeStaleTemps(dir: string): void {
  for (const f of readdirSync(dir)) {
    if (!f.endsWith(".tmp")) continue;
    try {
      if (Date.now() - statSync(join(dir, f)).mtimeMs > 10 * 60_000) unlinkSync(join(dir, f));
    } catch { /* gone already */ }
  }
}

/**
 * Makes sure the files of `e` are in their versioned folder under `base`, intact,
 * and returns the folder. A file is reused when its size and SHA-256 match (with
 * `check: "stamp"`, when its size, mtime and inode are as they were at the last
 * hash check); otherwise it is unpacked from the binary, checked, and renamed
 * into place, so two processes starting at once never see a partial file.
 *
 * With `rootOnly` (a process running as root), the folder, resolved, and every
 * folder above it must be changeable by root alone (else this throws, saying
 * why), and a file not owned by root, or writable by others, is unpacked again:
 * root never loads code another user could have written.
 */
export function ensureNativeFiles(e: EmbeddedNative, base: string, check: "hash" | "stamp", opts: { rootOnly?: boolean } = {}): NativeDir {
  let dir = nativeDirFor(e, base);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new Error(`cannot create ${dir} for DuckDB's native library (${(err as Error).message}); set SWITCHYARD_NATIVE_DIR to a writable folder`);
  }
  if (opts.rootOnly) {
    // The loader opens the resolved path, so that is the one checked and returned.
    dir = realpathSync(dir);
    const why = whyNotRootOnly(dir);
    if (why) throw new Error(`refusing to load DuckDB's native library as root from ${dir}: ${why}, so another user could put their own code there; set SWITCHYARD_NATIVE_DIR to a folder that only root can write`);
  }
  const stamp = readStamp(dir);
  const unpacked: string[] = [];
  let hashed = false;
  for (const f of e.files) {
    const path = join(dir, f.name);
    let st = statOrNull(path, opts.rootOnly);
    // For root, a file someone else could have changed is not even hashed: it is replaced.
    if (st !== null && opts.rootOnly && whyNotRootOnlyFile(st) !== null) st = null;
    const s = stamp[f.name];
    const stampOk = check === "stamp" && st !== null && s !== undefined && s.sha256 === f.sha256 && s.size === st.size && s.mtimeMs === st.mtimeMs && s.ino === st.ino;
    if (stampOk) continue;
    if (st !== null && st.size === f.size) {
      hashed = true;
      if (sha256File(path) === f.sha256) {
        stamp[f.name] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, sha256: f.sha256 };
        continue;
      }
    }
    if (unpacked.length === 0) removeStaleTemps(dir);
    const data = readFileSync(f.path);
    const got = createHash("sha256").update(data).digest("hex");
    if (data.length !== f.size || got !== f.sha256) {
      throw new Error(`the binary's embedded ${f.name} is damaged (${data.length} bytes, sha256 ${got}; expected ${f.size} bytes, sha256 ${f.sha256}): download the binary again`);
    }
    try {
      writeAtomic(path, data, 0o755);
    } catch (err) {
      throw new Error(`cannot write ${path} (${(err as Error).message}); set SWITCHYARD_NATIVE_DIR to a writable folder with room for ${Math.ceil(f.size / 1048576)} MiB`);
    }
    st = statSync(path);
    stamp[f.name] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, sha256: f.sha256 };
    unpacked.push(f.name);
  }
  if (hashed || unpacked.length > 0) {
    try {
      writeAtomic(join(dir, STAMP), new TextEncoder().encode(JSON.stringify(stamp) + "\n"), 0o644);
    } catch { /* the stamp only saves a hash check next time */ }
  }
  return { dir, unpacked, checked: unpacked.length > 0 ? "none" : hashed ? "hash" : "stamp" };
}

function statOrNull(path: string, noFollow = false) {
  try {
    return noFollow ? lstatSync(path) : statSync(path);
  } catch {
    return null;
  }
}
