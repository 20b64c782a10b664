import type { DuckDBAppender } from "@duckdb/node-api";
import type { Message } from "../core/message.ts";

/** The columns of a log row in DuckDB before conversion: ts in µs, text as is, binary as base64. */
export const LOG_ROW_COLUMNS = "ts_us BIGINT, stream VARCHAR, seq BIGINT, origin VARCHAR, kind VARCHAR, data VARCHAR";

/** Appends one message as a row of LOG_ROW_COLUMNS. */
export function appendLogRow(appender: DuckDBAppender, m: Message): void {
  appender.appendBigInt(BigInt(Math.round(m.ts)));
  appender.appendVarchar(m.stream);
  appender.appendBigInt(BigInt(m.seq));
  appender.appendVarchar(m.origin);
  appender.appendVarchar(typeof m.data === "string" ? "text" : "binary");
  appender.appendVarchar(typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64"));
  appender.endRow();
}
