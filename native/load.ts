import { join } from "node:path";
import { embedded } from "./embedded.ts";
import { rootNativeBase, runningAsRoot } from "./root-only.ts";
import { ensureNativeFiles, nativeCacheBase, type NativeDir } from "./unpack.ts";

/**
 * Makes the data dir's `cache/switchyard` the place DuckDB's library is unpacked,
 * unless SWITCHYARD_NATIVE_DIR or XDG_CACHE_HOME says otherwise: the data dir is
 * the one folder Switchyard may always write (an installed service may write
 * nothing else). Set in the environment, so workers see it too.
 */
export function unpackNativeUnder(dataDir: string, env: Record<string, string | undefined> = process.env): void {
  if (env.SWITCHYARD_NATIVE_DIR || env.XDG_CACHE_HOME) return;
  env.SWITCHYARD_NATIVE_DIR = join(dataDir, "cache", "switchyard");
}

/** True in the compiled binary, which carries DuckDB's native library inside. */
export function hasEmbeddedNative(): boolean {
  return embedded !== null;
}

/**
 * In the compiled binary: unpacks (or checks) the embedded DuckDB files now and
 * returns where they are; `check: "hash"` re-hashes files already there. In a
 * checkout: null (nothing to unpack). Throws with the reason when it cannot.
 *
 * Run as root, it never loads code another user could change: a configured
 * folder that is not root-only (the data dir's cache belongs to the service
 * user) gives way to root's own /var/cache/switchyard, and when that is not
 * root-only either it refuses, saying why and what to do.
 */
export function prepareNative(check: "hash" | "stamp" = "hash"): NativeDir | null {
  if (!embedded) return null;
  if (embedded.platform !== `${process.platform}-${process.arch}`) {
    throw new Error(`this binary carries DuckDB for ${embedded.platform}, but runs on ${process.platform}-${process.arch}`);
  }
  if (!runningAsRoot()) return ensureNativeFiles(embedded, nativeCacheBase(), check);
  return ensureNativeFiles(embedded, rootNativeBase(nativeCacheBase()), check, { rootOnly: true });
}

/** Loads the embedded bindings (the compiled binary's `@duckdb/node-bindings`). */
export function loadEmbeddedBindings(): unknown {
  let prepared: NativeDir | null;
  try {
    prepared = prepareNative("stamp");
  } catch (err) {
    throw new Error(`DuckDB is not available: ${(err as Error).message}`);
  }
  if (!prepared) throw new Error("DuckDB is not available: this build carries no native library");
  if (prepared.unpacked.length > 0) {
    process.stderr.write(`${new Date().toISOString()} INFO  duckdb native library unpacked dir=${JSON.stringify(prepared.dir)} files=${prepared.unpacked.join(",")}\n`);
  }
  const file = join(prepared.dir, "duckdb.node");
  const mod = { exports: {} as unknown };
  try {
    process.dlopen(mod, file);
  } catch (err) {
    throw new Error(`DuckDB is not available: loading ${file} failed (${(err as Error).message}); if that folder is on a noexec mount, set SWITCHYARD_NATIVE_DIR to another`);
  }
  return mod.exports;
}
