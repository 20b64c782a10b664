import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";

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
  if (!existsSync(logsDir) || (limits.days === 0 && limits.bytes === 0)) return [];
  const parts: { path: string; date: string; bytes: number }[] = [];
  for (const s of readdirSync(logsDir)) {
    if (!s.startsWith("stream=")) continue;
    for (const d of readdirSync(join(logsDir, s))) {
      const m = /^date=(\d{4}-\d{2}-\d{2})$/.exec(d);
      if (!m) continue;
      const path = join(logsDir, s, d);
      const bytes = readdirSync(path).reduce((a, f) => a + statSync(join(path, f)).size, 0);
      parts.push({ path, date: m[1]!, bytes });
    }
  }
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
  return removed;
}
