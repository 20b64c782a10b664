/**
 * The baseline of `bench -- answer`, run as its own process: a plain DuckDB
 * (@duckdb/node-api) over the log's Parquet files, with the query process's
 * default threads and memory limit, giving one query's rows as JSON the usual
 * way (getRowObjectsJson, JSON.stringify). Prints one JSON line: the answer's
 * length and the process's peak RSS (VmHWM) before and after the query.
 */
import { DuckDBInstance } from "@duckdb/node-api";
import { peakRssBytes as peak } from "./proc.ts";

const { logsDir, sql, threads, memoryMb } = JSON.parse(process.argv[2]!) as { logsDir: string; sql: string; threads: number; memoryMb: number };
const db = await DuckDBInstance.create(":memory:", { threads: String(threads), memory_limit: `${memoryMb}MB` });
const conn = await db.connect();
await conn.run(`CREATE VIEW messages AS SELECT ts, stream, seq, origin, kind, data, date FROM read_parquet('${logsDir}/stream=*/date=*/*.parquet', hive_partitioning = true, hive_types = {'date': DATE, 'stream': VARCHAR})`);
await conn.runAndReadAll("SELECT count(*) FROM messages");
const before = peak();
const r = await conn.runAndReadAll(sql);
const body = JSON.stringify(r.getRowObjectsJson()) + "\n";
console.log(JSON.stringify({ bytes: body.length, before, peak: peak() }));
conn.closeSync();
db.closeSync();
