import { existsSync, readdirSync } from "node:fs";
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
