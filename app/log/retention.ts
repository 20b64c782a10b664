import { readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { datePartitions, markLogChanged } from "./partitions.ts";

/** A date partition removed by retention, and why. */
export interface RemovedPartition {
  path: string;
  bytes: number;
  reason: string;
}

/**
 * Applies retention to the Parquet log: date partitions (`stream=…/date=…`)
 * older than `days` go, then the oldest dates (all streams) while the total is
 * over `bytes`. 0 turns either limit off. Returns what it removed.
 */
export function enforceParquetRetention(logsDir: string, limits: { days: number; bytes: number }, now = Date.now()): RemovedPartition[] {
  if (limits.days === 0 && limits.bytes === 0) return [];
  const parts = datePartitions(logsDir).map((p) => ({ ...p, bytes: readdirSync(p.path).reduce((a, f) => a + statSync(join(p.path, f)).size, 0) }));
  parts.sort((a, b) => a.date.localeCompare(b.date));
  let total = parts.reduce((a, p) => a + p.bytes, 0);
  const cutoff = new Date(now - limits.days * 86_400_000).toISOString().slice(0, 10);
  const removed: RemovedPartition[] = [];
  for (const p of parts) {
    const old = limits.days > 0 && p.date < cutoff;
    const over = limits.bytes > 0 && total > limits.bytes;
    if (!old && !over) continue;
    rmSync(p.path, { recursive: true, force: true });
    total -= p.bytes;
    removed.push({ path: p.path, bytes: p.bytes, reason: old ? `older than ${limits.days} days` : `log over ${limits.bytes} bytes` });
  }
  if (removed.length > 0) markLogChanged(logsDir);
  return removed;
}
