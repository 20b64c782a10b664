import { readdirSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { datePartitions, markLogChanged } from "./partitions.ts";

/** A date partition removed by retention, and why. */
export interface RemovedPartition {
  path: string;
  bytes: number;
  reason: string;
}

/** Files retention would have removed but kept, because they are not verified in the remote store yet. */
export interface KeptUnverified {
  files: number;
  bytes: number;
}

/**
 * Applies retention to the Parquet log: date partitions (`stream=…/date=…`)
 * older than `days` go, then the oldest dates (all streams) while the total is
 * over `bytes`. 0 turns either limit off. Returns what it removed.
 *
 * With `verified` (offloading is on: the paths, under `logsDir`, of the files
 * verified in the remote store, with their sizes then), only verified files go,
 * and only while their size is still the one verified (a file of another size
 * at a verified path is not the file that was verified); the others stay,
 * counted in `kept`, until they are verified there, even when that means the
 * log grows past the limits.
 */
export function enforceParquetRetention(logsDir: string, limits: { days: number; bytes: number }, now = Date.now(), verified?: Map<string, number>, kept?: KeptUnverified): RemovedPartition[] {
  if (limits.days === 0 && limits.bytes === 0) return [];
  const parts = datePartitions(logsDir).map((p) => {
    const files = readdirSync(p.path).map((f) => ({ name: f, bytes: statSync(join(p.path, f)).size }));
    return { ...p, files, bytes: files.reduce((a, f) => a + f.bytes, 0) };
  });
  parts.sort((a, b) => a.date.localeCompare(b.date));
  let total = parts.reduce((a, p) => a + p.bytes, 0);
  const cutoff = new Date(now - limits.days * 86_400_000).toISOString().slice(0, 10);
  const removed: RemovedPartition[] = [];
  for (const p of parts) {
    const old = limits.days > 0 && p.date < cutoff;
    const over = limits.bytes > 0 && total > limits.bytes;
    if (!old && !over) continue;
    const reason = old ? `older than ${limits.days} days` : `log over ${limits.bytes} bytes`;
    if (!verified) {
      rmSync(p.path, { recursive: true, force: true });
      total -= p.bytes;
      removed.push({ path: p.path, bytes: p.bytes, reason });
      continue;
    }
    const rel = relative(logsDir, p.path);
    let gone = 0;
    for (const f of p.files.filter((f) => f.name.endsWith(".parquet"))) {
      if (verified.get(`${rel}/${f.name}`) !== f.bytes) {
        if (kept) {
          kept.files++;
          kept.bytes += f.bytes;
        }
        continue;
      }
      rmSync(join(p.path, f.name), { force: true });
      gone += f.bytes;
    }
    if (gone === 0) continue;
    total -= gone;
    removed.push({ path: p.path, bytes: gone, reason: `${reason}; verified in the remote store` });
    if (readdirSync(p.path).every((f) => !f.endsWith(".parquet"))) rmSync(p.path, { recursive: true, force: true });
  }
  if (removed.length > 0) markLogChanged(logsDir);
  return removed;
}
