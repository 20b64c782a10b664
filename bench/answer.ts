/**
 * Memory of a big whole answer: POST /api/query of 100,000 rows of the log
 * (`SELECT * FROM messages LIMIT 100000`, within the default query_result_mb
 * and the HTTP row limit) as JSON and as CSV, on a fresh Switchyard each time
 * (1,000,000 rows generated straight into Parquet, as `bench -- log` does):
 * the peak RSS (VmHWM) of its query process and of its hub. The baseline, in
 * the same run: a plain DuckDB process over the same files (same threads and
 * memory limit) giving the same query's rows as JSON the usual way. Rounds
 * alternate Switchyard and the baseline.
 *
 *   npm run bench -- answer [--rounds N]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_SETTINGS } from "../app/config/settings.ts";
import { generateLog } from "./log.ts";
import { peakRssBytes, queryProcesses, runClient } from "./support/proc.ts";
import { startSwitchyard } from "./support/switchyard-proc.ts";

const BASELINE = join(import.meta.dir, "support", "answer-duckdb.ts");
const SQL = "SELECT * FROM messages LIMIT 100000";
const mib = (b: number) => (b / 1048576).toFixed(0);

export async function run(args: string[]) {
  const rounds = Number(args[args.indexOf("--rounds") + 1] ?? 0) || 3;
  const dataDir = mkdtempSync(join(tmpdir(), "switchyard-answer-"));
  try {
    await generateLog(join(dataDir, "logs"), 1_000_000);
    console.log(`| round | format | answer MB | query process: peak MiB before / after the answer | hub: peak MiB before / after | plain DuckDB, JSON: peak MiB before / after | ratio of the growths (Switchyard's query process / plain DuckDB) |`);
    console.log("|---|---|---|---|---|---|---|");
    for (let round = 1; round <= rounds; round++) {
      const base = await runClient<{ bytes: number; before: number; peak: number }>(BASELINE, { logsDir: join(dataDir, "logs"), sql: SQL, threads: DEFAULT_SETTINGS.query_threads, memoryMb: DEFAULT_SETTINGS.query_memory_mb });
      for (const format of ["json", "csv"]) {
        const sy = await startSwitchyard({ query_cache_mb: 0 }, 0, dataDir);
        try {
          const ask = (sql: string) => fetch(`${sy.url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format }), headers: sy.adminHeaders });
          await (await ask("SELECT count(*) FROM messages")).text(); // the query process started, DuckDB open and the files read once
          const [qp] = await queryProcesses(sy.pid);
          if (!qp) throw new Error("no query process found");
          const before = { q: peakRssBytes(qp), hub: peakRssBytes(sy.pid) };
          const res = await ask(SQL);
          const body = await res.text();
          if (res.status !== 200) throw new Error(`${res.status} ${body.slice(0, 300)}`);
          const after = { q: peakRssBytes(qp), hub: peakRssBytes(sy.pid) };
          const ratio = (after.q - before.q) / (base.peak - base.before);
          console.log(`| ${round} | ${format} | ${(body.length / 1e6).toFixed(1)} | ${mib(before.q)} / ${mib(after.q)} | ${mib(before.hub)} / ${mib(after.hub)} | ${mib(base.before)} / ${mib(base.peak)} (${(base.bytes / 1e6).toFixed(1)} MB) | ${ratio.toFixed(2)} |`);
        } finally {
          await sy.stop();
          rmSync(join(dataDir, "spool"), { recursive: true, force: true });
        }
      }
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
