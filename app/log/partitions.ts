import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** One hive partition of the Parquet log: `logsDir/stream=…/date=YYYY-MM-DD`. */
export interface DatePartition {
  path: string;
  date: string;
}

/** Every date partition of the Parquet log (none when the folder does not exist yet). */
export function datePartitions(logsDir: string): DatePartition[] {
  if (!existsSync(logsDir)) return [];
  const out: DatePartition[] = [];
  for (const s of readdirSync(logsDir, { withFileTypes: true })) {
    // A stray file where a folder belongs is skipped, not fatal: the rest of the log stays usable.
    if (!s.isDirectory() || !s.name.startsWith("stream=")) continue;
    for (const d of readdirSync(join(logsDir, s.name), { withFileTypes: true })) {
      const m = /^date=(\d{4}-\d{2}-\d{2})$/.exec(d.name);
      if (m && d.isDirectory()) out.push({ path: join(logsDir, s.name, d.name), date: m[1]! });
    }
  }
  return out;
}

/** A file in the Parquet folder whose content changes whenever files are added or removed there. */
const CHANGED = ".changed";

/**
 * Says that Parquet files were added or removed under `logsDir` (compaction,
 * merge, retention), so that a query engine reusing its listing lists again.
 */
export function markLogChanged(logsDir: string): void {
  try {
    writeFileSync(join(logsDir, CHANGED), `${Date.now()} ${process.pid} ${Math.random()}\n`);
  } catch {
    // The folder is gone or unwritable: an engine lists again within its reuse time anyway.
  }
}

/** The last change mark under `logsDir` ("" when none). */
export function logChangeMark(logsDir: string): string {
  try {
    return readFileSync(join(logsDir, CHANGED), "utf8");
  } catch {
    return "";
  }
}
