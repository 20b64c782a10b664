import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import type { DuckDBConnection } from "@duckdb/node-api";
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

/** The columns of every Parquet file of the log, in order, as DuckDB reads them (stream and date are its folders). */
const LOG_FILE_COLUMNS = "ts TIMESTAMP, seq BIGINT, origin VARCHAR, kind VARCHAR, data VARCHAR";

/**
 * Why the Parquet file at `path` cannot be part of the log, or null when it
 * can: it does not read as Parquet (its footer), or its columns are not the
 * log's (a file of another table dropped into the folder: read first, its
 * columns would be the view's, and every query would fail to bind).
 */
export async function logFileProblem(conn: DuckDBConnection, path: string): Promise<string | null> {
  const file = `'${path.replaceAll("'", "''")}'`;
  try {
    await conn.run(`SELECT count(*) FROM parquet_metadata(${file})`);
    const columns = (await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${file}, hive_partitioning = false)`)).getRows().map((r) => `${String(r[0])} ${String(r[1])}`).join(", ");
    return columns === LOG_FILE_COLUMNS ? null : `not a file of the log: its columns are (${columns}), the log's are (${LOG_FILE_COLUMNS})`;
  } catch (err) {
    return `unreadable Parquet file: ${(err as Error).message.split("\n")[0]}`;
  }
}
