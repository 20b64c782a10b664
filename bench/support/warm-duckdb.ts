/**
 * The baseline of the query benchmark, run as its own process: a plain warm
 * DuckDB (@duckdb/node-api) over the same Parquet files, with the same threads
 * and memory limit as Switchyard's query process. Runs each query once to warm
 * up, then `runs` times, each answer turned into JSON as Switchyard does; prints
 * one JSON line of milliseconds per query.
 */
import { DuckDBInstance } from "@duckdb/node-api";

const { logsDir, queries, runs, threads, memoryMb } = JSON.parse(process.argv[2]!) as { logsDir: string; queries: { name: string; sql: string }[]; runs: number; threads: number; memoryMb: number };
const db = await DuckDBInstance.create(":memory:", { threads: String(threads), memory_limit: `${memoryMb}MB` });
const conn = await db.connect();
await conn.run(`CREATE VIEW messages AS SELECT ts, stream, seq, origin, kind, data, date FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true, hive_types = {'date': DATE, 'stream': VARCHAR})`);
const out: Record<string, number[]> = {};
for (const q of queries) {
  const once = async () => {
    const t0 = performance.now();
    const r = await conn.runAndReadAll(q.sql);
    JSON.stringify(r.getRowObjectsJson());
    return performance.now() - t0;
  };
  await once();
  out[q.name] = [];
  for (let i = 0; i < runs; i++) out[q.name]!.push(await once());
}
conn.closeSync();
db.closeSync();
console.log(JSON.stringify(out));
