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
  for (const s of readdirSync(logsDir)) {
    if (!s.startsWith("stream=")) continue;
    for (const d of readdirSync(join(logsDir, s))) {
      const m = /^date=(\d{4}-\d{2}-\d{2})$/.exec(d);
      if (m) out.push({ path: join(logsDir, s, d), date: m[1]! });
    }
  }
  return out;
}
