/** The columns of a log row in DuckDB before conversion: ts in µs, text as is, binary as base64. */
export const LOG_ROW_COLUMNS = "ts_us BIGINT, stream VARCHAR, seq BIGINT, origin VARCHAR, kind VARCHAR, data VARCHAR";
