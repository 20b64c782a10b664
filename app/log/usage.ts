import { readdirSync, statfsSync, statSync } from "node:fs";
import { join } from "node:path";

/** Bytes of the files under `dir` (0 when it does not exist). */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    try {
      if (e.isDirectory()) total += dirBytes(p);
      else if (e.isFile()) total += statSync(p).size;
    } catch {
      // removed while walking (compaction, retention): not counted
    }
  }
  return total;
}

/** Disk use of the durable log and the data dir's file system. */
export interface LogUsage {
  parquet_bytes: number;
  /** The offload to S3, when on: files waiting to be verified remote (kept locally meanwhile) and verified. */
  offload?: { pending_files: number; pending_bytes: number; verified_files: number; verified_bytes: number; failing_since: string | null; last_error: string | null } | null;
  spool_bytes: number;
  free_bytes: number;
  total_bytes: number;
}

/** Disk use of the log under `dataDir`, walked at most once per `maxAgeMs`. */
export function logUsageReader(dataDir: string, maxAgeMs = 10_000): () => LogUsage {
  let cached: { at: number; usage: LogUsage } | null = null;
  return () => {
    const now = Date.now();
    if (cached && now - cached.at < maxAgeMs) return cached.usage;
    let free = 0;
    let total = 0;
    try {
      const s = statfsSync(dataDir);
      free = s.bavail * s.bsize;
      total = s.blocks * s.bsize;
    } catch {
      // not created yet
    }
    cached = { at: now, usage: { parquet_bytes: dirBytes(join(dataDir, "logs")), spool_bytes: dirBytes(join(dataDir, "spool")), free_bytes: free, total_bytes: total } };
    return cached.usage;
  };
}
