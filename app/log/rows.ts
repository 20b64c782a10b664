import type { DuckDBConnection } from "@duckdb/node-api";
import { Spool } from "./spool.ts";

/** The columns of a log row in DuckDB before conversion: ts in µs, text as is, binary as base64. */
export const LOG_ROW_COLUMNS = "ts_us BIGINT, stream VARCHAR, seq BIGINT, origin VARCHAR, kind VARCHAR, data VARCHAR";

/**
 * Creates table `table` with LOG_ROW_COLUMNS and fills it with every record of
 * the spool segment files, in order, through DuckDB's appender. Returns the rows.
 */
export async function loadSegments(conn: DuckDBConnection, table: string, segmentPaths: string[]): Promise<number> {
  await conn.run(`CREATE OR REPLACE TEMP TABLE ${table} (${LOG_ROW_COLUMNS})`);
  const appender = await conn.createAppender(table);
  let rows = 0;
  for (const path of segmentPaths) {
    for (const m of Spool.read(path)) {
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
