/**
 * Durable-log benchmark, part 1: sustained ingest. A publisher process sends
 * ~100-byte messages flat out over a websocket to one Switchyard process, with
 * the durable log on (the default) and off (`log_exclude: ["*"]`, switched live
 * through PATCH /api/settings between rounds). One process for both, because two
 * identical server processes on this machine were seen to differ by 2x.
 * Measures messages/s the hub accepted (from the first message to the last
 * counted in /api/streams) and RSS idle and during ingest.
 *
 *   npm run bench -- log [--quick] [--rounds N] [--rows N]
 *
 * Part 2, query latency: 10 million rows of log are generated straight into the
 * Parquet layout (by DuckDB: logging them through the hub would take the whole
 * run), and typical queries go to POST /api/query of a running Switchyard:
 * median and worst of 5 runs each. Part 3: the server's RSS idle, during ingest
 * (part 1) and during a query.
 */
import { DuckDBInstance } from "@duckdb/node-api";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rssBytes, runClient } from "./support/proc.ts";
import { startSwitchyard, type SwitchyardProcess } from "./support/switchyard-proc.ts";

const PUBLISHER = join(import.meta.dir, "support", "publisher.ts");
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

async function accepted(sy: SwitchyardProcess, stream: string): Promise<number> {
  const r = await fetch(`${sy.url}/api/streams/${stream}`);
  return r.ok ? ((await r.json()) as { messages_in: number }).messages_in : 0;
}

/** Publishes `messages` on a fresh stream and returns the accepted rate and the peak RSS meanwhile. */
async function trial(sy: SwitchyardProcess, stream: string, messages: number) {
  let peak = 0;
  const sampler = setInterval(async () => { peak = Math.max(peak, await rssBytes(sy.pid)); }, 100);
  const t0 = performance.now();
  await runClient<{ seconds: number }>(PUBLISHER, { url: `ws://127.0.0.1:${sy.port}/ws/${stream}`, messages, bytes: 100 });
  while ((await accepted(sy, stream)) < messages) await Bun.sleep(5);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  return { perSecond: messages / seconds, peak };
}

/** Writes `rows` log rows over 20 streams and 3 days into the hive layout under `logsDir`, as compaction would. */
async function generateLog(logsDir: string, rows: number): Promise<void> {
  const db = await DuckDBInstance.create(":memory:", { threads: "2", memory_limit: "1GB" });
  const c = await db.connect();
  await c.run(`COPY (
      SELECT make_timestamp(1795392000000000 + i * (259200000000 // ${rows})) AS ts,
             'spin' || (i % 20) AS stream, i // 20 + 1 AS seq, 'udp:10.0.0.' || (i % 20) || ':5000' AS origin, 'text' AS kind,
             '{"stream":"spin' || (i % 20) || '","v":' || (i % 1000) || ',"t":' || i || '}' AS data,
             strftime(make_timestamp(1795392000000000 + i * (259200000000 // ${rows})), '%Y-%m-%d') AS date
      FROM range(${rows}) t(i))
    TO '${logsDir}' (FORMAT parquet, PARTITION_BY (stream, date), COMPRESSION zstd, ROW_GROUP_SIZE 100000, FILENAME_PATTERN 'seg0_{i}')`);
  c.closeSync();
  db.closeSync();
}

/** Times POST /api/query for each query: median and worst of `runs`, and the server's peak RSS meanwhile. */
async function queryLatency(sy: SwitchyardProcess, runs: number, rows: number) {
  const queries: [string, string][] = [
    ["count by stream", "SELECT stream, count(*) AS n FROM messages GROUP BY 1"],
    ["1-minute buckets of one stream, one day", "SELECT time_bucket(INTERVAL 1 MINUTE, ts) AS t, avg((data::JSON->>'v')::INT) AS v FROM messages WHERE stream = 'spin7' AND date = DATE '2026-11-24' GROUP BY 1 ORDER BY 1"],
    ["latest 100 of one stream", "SELECT ts, seq, data FROM messages WHERE stream = 'spin7' ORDER BY ts DESC LIMIT 100"],
    ["point lookup by seq", `SELECT * FROM messages WHERE stream = 'spin7' AND seq = ${Math.floor(rows / 40)}`],
  ];
  let peak = 0;
  const sampler = setInterval(async () => { peak = Math.max(peak, await rssBytes(sy.pid)); }, 50);
  const out: { name: string; median: number; worst: number; rows: string }[] = [];
  for (const [name, sql] of queries) {
    const times: number[] = [];
    let rows = "";
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const r = await fetch(`${sy.url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format: "json" }), headers: sy.adminHeaders });
      if (!r.ok) throw new Error(`${name}: ${await r.text()}`);
      await r.arrayBuffer();
      times.push(performance.now() - t0);
      rows = r.headers.get("x-switchyard-rows") ?? "";
    }
    times.sort((a, b) => a - b);
    out.push({ name, median: times[Math.floor(times.length / 2)]!, worst: times[times.length - 1]!, rows });
  }
  clearInterval(sampler);
  return { results: out, peak };
}

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const roundsArg = args.indexOf("--rounds");
  const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 3;
  const messages = quick ? 200_000 : 1_000_000;
  const sy = await startSwitchyard({});
  const setLog = async (on: boolean) => {
    const r = await fetch(`${sy.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ log_exclude: on ? [] : ["*"] }), headers: sy.adminHeaders });
    if (!r.ok) throw new Error(`could not switch the log: ${await r.text()}`);
  };
  try {
    await Bun.sleep(500);
    const idle = await rssBytes(sy.pid);
    console.log(`log benchmark: ${fmt(messages)} messages of ~100 bytes, one websocket publisher, ${rounds} round(s), best kept; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
    const best: Record<string, { perSecond: number; peak: number }> = {};
    for (let r = 0; r < rounds; r++) {
      for (const name of r % 2 === 0 ? ["off", "on"] : ["on", "off"]) {
        await setLog(name === "on");
        const res = await trial(sy, `ingest-${name}-${r}`, messages);
        if (!best[name] || res.perSecond > best[name]!.perSecond) best[name] = res;
      }
    }
    console.log("\n| durable log | accepted messages/s | peak RSS during ingest |");
    console.log("|---|---|---|");
    console.log(`| on (default) | ${fmt(best.on!.perSecond)} | ${mib(best.on!.peak)} |`);
    console.log(`| off (log_exclude ["*"]) | ${fmt(best.off!.perSecond)} | ${mib(best.off!.peak)} |`);
    console.log(`\nratio on / off: **${(best.on!.perSecond / best.off!.perSecond).toFixed(2)}**; idle RSS ${mib(idle)}`);
  } finally {
    await sy.stop();
  }

  const rowsArg = args.indexOf("--rows");
  const rows = rowsArg >= 0 ? Number(args[rowsArg + 1]) : quick ? 1_000_000 : 10_000_000;
  const dataDir = mkdtempSync(join(tmpdir(), "switchyard-bench-log-"));
  try {
    const t0 = performance.now();
    await generateLog(join(dataDir, "logs"), rows);
    console.log(`\ngenerated ${fmt(rows)} rows of log as Parquet in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const q = await startSwitchyard({}, 0, dataDir);
    try {
      const idleQ = await rssBytes(q.pid);
      const { results, peak } = await queryLatency(q, 5, rows);
      console.log("\n| query over " + fmt(rows) + " rows (POST /api/query) | median ms | worst ms | rows |");
      console.log("|---|---|---|---|");
      for (const r of results) console.log(`| ${r.name} | ${r.median.toFixed(0)} | ${r.worst.toFixed(0)} | ${r.rows} |`);
      console.log(`\nserver RSS: idle ${mib(idleQ)}, peak during the queries ${mib(peak)}, after ${mib(await rssBytes(q.pid))}`);
    } finally {
      await q.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
