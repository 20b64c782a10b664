import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";

/** A file moved out of the way because it could not be read, and why. */
export interface Quarantined {
  from: string;
  /** Where it is now ("" when it could not be moved). */
  to: string;
  reason: string;
}

/**
 * Moves a file Switchyard cannot read (a garbage Parquet file, a damaged spool
 * segment) to `DATA_DIR/quarantine/<its path under DATA_DIR>`, never deleting
 * it, and writes `<name>.reason.txt` beside it saying why. A name taken already
 * gets a `.N` suffix. Returns where it went.
 */
export function quarantineFile(dataDir: string, path: string, reason: string): Quarantined {
  const rel = relative(dataDir, path);
  const base = join(dataDir, "quarantine", rel.startsWith("..") ? path.replace(/^\/+/, "") : rel);
  let to = base;
  for (let i = 1; existsSync(to); i++) to = `${base}.${i}`;
  mkdirSync(dirname(to), { recursive: true });
  renameSync(path, to);
  try {
    writeFileSync(`${to}.reason.txt`, `${new Date().toISOString()} ${path}: ${reason}\n`);
  } catch (err) {
    // Moved already (a full disk refuses the note, not the rename): the caller still reports where it went.
    return { from: path, to, reason: `${reason} (its .reason.txt could not be written: ${(err as Error).message})` };
  }
  return { from: path, to, reason };
}
