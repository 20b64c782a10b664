import { readdirSync, rmSync, statSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
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

/** A date partition with the files in it (name and size), as retention sees it. */
export interface ListedPartition {
  path: string;
  date: string;
  files: { name: string; bytes: number }[];
}

/** What retention removes from one partition: every file (`files` null) or only those named. */
export interface RetentionStep {
  partition: ListedPartition;
  /** null: the whole partition folder goes; else the Parquet files (names) that go. */
  files: string[] | null;
  bytes: number;
  reason: string;
}

/**
 * Decides retention of the Parquet log from a listing of its date partitions
 * (`stream=…/date=…`): partitions older than `days` go, then the oldest dates
 * (all streams) while the total is over `bytes`. 0 turns either limit off.
 *
 * With `verified` (offloading is on: the paths, under `logsDir`, of the files
 * verified in the remote store, with their sizes then), only verified files go,
 * and only while their size is still the one verified (a file of another size
 * at a verified path is not the file that was verified); the others stay,
 * counted in `kept`, until they are verified there, even when that means the
 * log grows past the limits. Removes nothing itself.
 */
export function planParquetRetention(logsDir: string, parts: ListedPartition[], limits: { days: number; bytes: number }, now: number, verified?: Map<string, number>, kept?: KeptUnverified): RetentionStep[] {
  if (limits.days === 0 && limits.bytes === 0) return [];
  const sorted = [...parts].sort((a, b) => a.date.localeCompare(b.date));
  let total = sorted.reduce((a, p) => a + p.files.reduce((b, f) => b + f.bytes, 0), 0);
  const cutoff = new Date(now - limits.days * 86_400_000).toISOString().slice(0, 10);
  const steps: RetentionStep[] = [];
  for (const p of sorted) {
    const old = limits.days > 0 && p.date < cutoff;
    const over = limits.bytes > 0 && total > limits.bytes;
    if (!old && !over) continue;
    const reason = old ? `older than ${limits.days} days` : `log over ${limits.bytes} bytes`;
    if (!verified) {
      const bytes = p.files.reduce((a, f) => a + f.bytes, 0);
      total -= bytes;
      steps.push({ partition: p, files: null, bytes, reason });
      continue;
    }
    const rel = relative(logsDir, p.path);
    const going: string[] = [];
    let bytes = 0;
    for (const f of p.files.filter((f) => f.name.endsWith(".parquet"))) {
      if (verified.get(`${rel}/${f.name}`) !== f.bytes) {
        if (kept) {
          kept.files++;
          kept.bytes += f.bytes;
        }
        continue;
      }
      going.push(f.name);
      bytes += f.bytes;
    }
    if (going.length === 0) continue;
    total -= bytes;
    steps.push({ partition: p, files: going, bytes, reason: `${reason}; verified in the remote store` });
  }
  return steps;
}

/** Every date partition under `logsDir` with its files, listed synchronously (in a compaction process). */
export function listPartitionsSync(logsDir: string): ListedPartition[] {
  return datePartitions(logsDir).map((p) => ({ ...p, files: readdirSync(p.path).map((f) => ({ name: f, bytes: statSync(join(p.path, f)).size })) }));
}

/**
 * Every date partition under `logsDir` with its files, listed with
 * asynchronous calls (in the hub: a big log does not stall it). A file or
 * folder gone while listing is left out; any other failure to read throws.
 */
export async function listPartitions(logsDir: string): Promise<ListedPartition[]> {
  const out: ListedPartition[] = [];
  // Only what is gone is left out: any other failure (EMFILE, EIO) throws, so no caller takes a folder it could not read for an empty one.
  const list = async (dir: string) => readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [];
    throw err;
  });
  for (const s of await list(logsDir)) {
    if (!s.isDirectory() || !s.name.startsWith("stream=")) continue;
    for (const d of await list(join(logsDir, s.name))) {
      const m = /^date=(\d{4}-\d{2}-\d{2})$/.exec(d.name);
      if (!m || !d.isDirectory()) continue;
      const path = join(logsDir, s.name, d.name);
      const files: ListedPartition["files"] = [];
      for (const f of await list(path)) {
        if (!f.isFile()) continue;
        const st = await stat(join(path, f.name)).catch((err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return null;
          throw err;
        });
        if (st) files.push({ name: f.name, bytes: st.size });
      }
      out.push({ path, date: m[1]!, files });
    }
  }
  return out;
}

/**
 * Applies retention to the Parquet log with offloading off (see
 * planParquetRetention): whole date partitions go. Returns what it removed.
 * With offloading on, the Offloader applies retention instead, in its own pass.
 */
export function enforceParquetRetention(logsDir: string, limits: { days: number; bytes: number }, now = Date.now()): RemovedPartition[] {
  const removed: RemovedPartition[] = [];
  for (const step of planParquetRetention(logsDir, listPartitionsSync(logsDir), limits, now)) {
    rmSync(step.partition.path, { recursive: true, force: true });
    removed.push({ path: step.partition.path, bytes: step.bytes, reason: step.reason });
  }
  if (removed.length > 0) markLogChanged(logsDir);
  return removed;
}
