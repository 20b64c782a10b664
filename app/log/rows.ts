import type { DuckDBConnection } from "@duckdb/node-api";
import { Spool } from "./spool.ts";

/** The columns of a log row in DuckDB before conversion: ts in µs, text as is, binary as base64. */
export const LOG_ROW_COLUMNS = "ts_us BIGINT, stream VARCHAR, seq BIGINT, origin VARCHAR, kind VARCHAR, data VARCHAR";

/**
 * Creates table `table` with LOG_ROW_COLUMNS and fills it with every record of
 * the spool segment files, in order, through DuckDB's appender. Returns the rows.
 */
export async function loadSegments(conn: DuckDBConnection, table: string, segmentPaths: string[], opts: { skipMissing?: boolean; loaded?: string[] } = {}): Promise<number> {
  await conn.run(`CREATE OR REPLACE TEMP TABLE ${table} (${LOG_ROW_COLUMNS})`);
  const appender = await conn.createAppender(table);
  let rows = 0;
  for (const path of segmentPaths) {
    let messages;
    try {
      // Spool.read reads the whole file before the first message: a segment removed meanwhile fails here, not halfway.
      messages = Spool.read(path);
      const first = messages.next();
      messages = first.done ? [] : [first.value, ...messages];
    } catch (err) {
      if (opts.skipMissing && (err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw err;
    }
    opts.loaded?.push(path);
    for (const m of messages) {
      appender.appendBigInt(BigInt(Math.round(m.ts)));
      appender.appendVarchar(m.stream);
      appender.appendBigInt(BigInt(m.seq));
      appender.appendVarchar(m.origin);
      appender.appendVarchar(typeof m.data === "string" ? "text" : "binary");
      appender.appendVarchar(typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64"));
      appender.endRow();
      rows++;
    }
  }
  appender.closeSync();
  return rows;
}
