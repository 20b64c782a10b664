/**
 * The baseline of the query benchmark, run as its own process: a plain warm
 * DuckDB (@duckdb/node-api) over the same Parquet files, with the same threads
 * and memory limit as Switchyard's query process. Runs each query once to warm
 * up, then `runs` times, each answer turned into JSON as Switchyard does; prints
 * one JSON line of milliseconds per query. With `seconds`, runs the queries
 * round after round for that long instead (the baseline during ingest).
 */
import { DuckDBInstance } from "@duckdb/node-api";

const { logsDir, queries, runs, threads, memoryMb, seconds } = JSON.parse(process.argv[2]!) as { logsDir: string; queries: { name: string; sql: string }[]; runs: number; threads: number; memoryMb: number; seconds?: number };
const db = await DuckDBInstance.create(":memory:", { threads: String(threads), memory_limit: `${memoryMb}MB` });
const conn = await db.connect();
await conn.run(`CREATE VIEW messages AS SELECT ts, stream, seq, origin, kind, data, date FROM read_parquet('${logsDir}/stream=*/date=*/*.parquet', hive_partitioning = true, hive_types = {'date': DATE, 'stream': VARCHAR})`);
const out: Record<string, number[]> = {};
const once = async (sql: string) => {
  const t0 = performance.now();
  const r = await conn.runAndReadAll(sql);
  JSON.stringify(r.getRowObjectsJson());
  return performance.now() - t0;
};
for (const q of queries) await once(q.sql);
if (seconds) {
  const end = performance.now() + seconds * 1000;
  // The files change under it (compaction of what is ingested meanwhile): a run that finds one gone is not timed.
  let failed = 0;
  while (performance.now() < end) {
    for (const q of queries) {
      try {
        (out[q.name] ??= []).push(await once(q.sql));
      } catch {
        failed++;
      }
    }
  }
  out.failed = [failed];
} else {
  for (const q of queries) {
    out[q.name] = [];
    for (let i = 0; i < runs; i++) out[q.name]!.push(await once(q.sql));
  }
}
conn.closeSync();
db.closeSync();
console.log(JSON.stringify(out));
