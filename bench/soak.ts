/**
 * Soak: the real server (a `switchyard serve` subprocess) under mixed load for
 * a long time, to see that memory, the spool, compaction and queries stay level.
 *
 *   npm run bench -- soak [--minutes N]     (default 10)
 *
 * Load (its own process, bench/support/soak-load.ts): 20 websocket subscribers
 * on 5 streams, ~2,000 msg/s websocket publish, 500 UDP datagrams/s of which 30%
 * are garbage, one subscriber that never reads. This process sends a query every
 * 5 s and samples every 10 s: RSS (server and its children), CPU, spool size,
 * sealed segments waiting for compaction and how long the oldest has waited,
 * query latency. The baseline is the run's own first minute: the verdict compares
 * the last minute with minute 1 (peak RSS ≤ 1.3×, median query latency ≤ 1.5×), RSS under the
 * installed unit's MemoryMax, the oldest sealed segment never waiting longer
 * than a few compaction intervals, and no errors.
 *
 * Segments are sealed every 30 s and compacted every 10 s (rather than the
 * defaults, 300 s and 60 s) so that a short soak compacts many times.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { newTokenSecret } from "../app/auth/stream-token.ts";
import { adminTokenSecret, signAdminToken } from "../app/auth/admin-token.ts";
import { SettingsStore } from "../app/config/store.ts";
import { TOKEN_SECRET_NAME } from "../app/server.ts";
import { rssBytes, runClient } from "./support/proc.ts";

const MAIN = join(import.meta.dir, "..", "app", "main.ts");
const LOAD = join(import.meta.dir, "support", "soak-load.ts");
/** The installed unit's MemoryMax (install.sh). */
const MEMORY_MAX = 384 * 1024 * 1024;
const SEGMENT_SECONDS = 30;
const COMPACT_SECONDS = 10;
const QUERY = "SELECT stream, count(*) AS n, max(seq) AS last FROM messages WHERE ts > now() - INTERVAL 1 MINUTE GROUP BY stream ORDER BY stream";

interface Sample {
  seconds: number;
  rss: number;
  cpu: number;
  spool: number;
  waiting: number;
  lag: number;
  queryMs: number;
  queries: number;
  errors: number;
}

/** RSS of a process and all its descendants (query and compaction children count). */
async function treeRss(pid: number): Promise<number> {
  const children = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch { /* gone */ }
  }
  let total = 0;
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    const rss = await rssBytes(p).catch(() => 0);
    total += Number.isNaN(rss) ? 0 : rss;
    stack.push(...(children.get(p) ?? []));
  }
  return total;
}

/** CPU seconds (user + system) a process has used, from /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14-17 of stat (utime, stime, cutime, cstime), counted from field 3 here; 100 ticks a second.
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

/** Spool bytes, sealed segments waiting for compaction, and how long the oldest has waited (s). */
function spoolState(dir: string): { bytes: number; waiting: number; lag: number } {
  const files = readdirSync(dir).filter((f) => f.endsWith(".wal")).sort();
  let bytes = 0;
  for (const f of files) try { bytes += statSync(join(dir, f)).size; } catch { /* compacted meanwhile */ }
  const sealed = files.slice(0, -1);
  let lag = 0;
  if (sealed.length > 0) try { lag = (Date.now() - statSync(join(dir, sealed[0]!)).mtimeMs) / 1000; } catch { /* compacted meanwhile */ }
  return { bytes, waiting: sealed.length, lag };
}

const median = (xs: number[]) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);
const mib = (b: number) => (b / 1048576).toFixed(1);

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { minutes: { type: "string", default: "10" } } });
  const minutes = Number(values.minutes);
  if (!Number.isFinite(minutes) || minutes < 2) throw new Error("--minutes: allowed: a number of minutes, at least 2 (minute 1 is the baseline)");
  const dataDir = mkdtempSync(join(tmpdir(), "switchyard-soak-"));
  const udpProbe = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  const udpPort = udpProbe.port;
  udpProbe.close();
  const store = SettingsStore.open(dataDir);
  store.update({ log_segment_seconds: SEGMENT_SECONDS, log_compact_seconds: COMPACT_SECONDS });
  store.secret(TOKEN_SECRET_NAME, newTokenSecret);
  // The soak's queries run as the admin (loopback grants no admin power).
  const adminHeaders = { Authorization: `Bearer ${await signAdminToken(adminTokenSecret(store), 24 * 3600)}` };
  store.close();
  const server = Bun.spawn([process.execPath, MAIN, "serve", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", "0", "--udp-host", "127.0.0.1", "--udp-port", String(udpPort)],
    { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  // The server's log: ERROR lines are errors (the first few are printed at the end).
  const errors: string[] = [];
  let listening: (port: number) => void = () => {};
  const portKnown = new Promise<number>((resolve) => { listening = resolve; });
  void (async () => {
    let pending = "";
    for await (const chunk of server.stderr) {
      pending += new TextDecoder().decode(chunk);
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (/^\S+ ERROR /.test(line)) errors.push(line);
        const m = /http=http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
        if (m) listening(Number(m[1]));
      }
    }
  })();
  const port = await Promise.race([portKnown, Bun.sleep(20_000).then(() => { throw new Error("the server did not start within 20 s"); })]);
  const url = `http://127.0.0.1:${port}`;
  console.log(`soak: ${minutes} min against ${url} (pid ${server.pid}), UDP ${udpPort}, data ${dataDir}`);
  console.log(`load: 20 subscribers on 5 streams, 2,000 msg/s websocket, 500 UDP datagrams/s (30% garbage), 1 reader that never reads, 1 query / 5 s`);

  const load = runClient<{ published: number; received: number; udpSent: number; udpGarbage: number; unexpectedCloses: string[] }>(LOAD, {
    port, udpPort, seconds: minutes * 60, streams: 5, subscribers: 20, rate: 2000, udpRate: 500, garbagePercent: 30,
  });

  const t0 = Date.now();
  const samples: Sample[] = [];
  const queryTimes: { at: number; ms: number }[] = [];
  const queryFailures: string[] = [];
  let lastCpu = cpuSeconds(server.pid);
  let lastAt = t0;
  let nextQuery = t0 + 5000;
  let nextSample = t0 + 10_000;
  const end = t0 + minutes * 60_000;
  console.log(`\n${"min".padStart(5)} ${"RSS MiB".padStart(8)} ${"CPU %".padStart(6)} ${"spool MiB".padStart(9)} ${"sealed".padStart(6)} ${"lag s".padStart(6)} ${"query ms".padStart(9)} ${"errors".padStart(6)}`);
  while (Date.now() < end) {
    await Bun.sleep(Math.max(0, Math.min(nextQuery, nextSample) - Date.now()));
    const now = Date.now();
    if (now >= nextQuery) {
      nextQuery += 5000;
      const q0 = performance.now();
      try {
        const r = await fetch(`${url}/api/query`, { method: "POST", body: JSON.stringify({ sql: QUERY }), headers: adminHeaders, signal: AbortSignal.timeout(60_000) });
        const body = await r.text();
        if (r.ok) queryTimes.push({ at: Date.now(), ms: performance.now() - q0 });
        else queryFailures.push(`${r.status} ${body.slice(0, 200)}`);
      } catch (err) {
        queryFailures.push((err as Error).message);
      }
    }
    if (Date.now() >= nextSample) {
      nextSample += 10_000;
      const at = Date.now();
      const cpu = cpuSeconds(server.pid);
      const spool = spoolState(join(dataDir, "spool"));
      const windowQueries = queryTimes.filter((q) => q.at > at - 10_000).map((q) => q.ms);
      const s: Sample = {
        seconds: (at - t0) / 1000, rss: await treeRss(server.pid), cpu: (100 * (cpu - lastCpu)) / ((at - lastAt) / 1000),
        spool: spool.bytes, waiting: spool.waiting, lag: spool.lag, queryMs: median(windowQueries), queries: windowQueries.length, errors: queryFailures.length + errors.length,
      };
      lastCpu = cpu;
      lastAt = at;
      samples.push(s);
      console.log(`${(s.seconds / 60).toFixed(1).padStart(5)} ${mib(s.rss).padStart(8)} ${s.cpu.toFixed(0).padStart(6)} ${mib(s.spool).padStart(9)} ${String(s.waiting).padStart(6)} ${s.lag.toFixed(0).padStart(6)} ${s.queryMs.toFixed(0).padStart(9)} ${String(s.errors).padStart(6)}`);
    }
  }
  const counts = await load;
  const health = await (await fetch(`${url}/healthz`)).json().catch(() => null);
  server.kill("SIGTERM");
  await server.exited;

  // RSS swings with each segment's cycle (written, sealed, compacted): each minute is judged by its peak.
  const rss1 = Math.max(...samples.filter((s) => s.seconds <= 60).map((s) => s.rss));
  const rssEnd = Math.max(...samples.filter((s) => s.seconds > (minutes - 1) * 60).map((s) => s.rss));
  const minute1 = samples.find((s) => s.seconds >= 60) ?? samples[0]!;
  const last = samples[samples.length - 1]!;
  const q1 = median(queryTimes.filter((q) => q.at - t0 <= 60_000).map((q) => q.ms));
  const qEnd = median(queryTimes.filter((q) => q.at - t0 > (minutes - 1) * 60_000).map((q) => q.ms));
  const maxLag = Math.max(...samples.filter((s) => s.seconds > 60).map((s) => s.lag));
  const lagLimit = SEGMENT_SECONDS + 3 * COMPACT_SECONDS;
  const checks: [string, boolean, string][] = [
    ["RSS in the last minute ≤ 1.3× RSS in minute 1 (peaks)", rssEnd <= 1.3 * rss1, `${mib(rss1)} → ${mib(rssEnd)} MiB (${(rssEnd / rss1).toFixed(2)}×)`],
    ["RSS under the unit's MemoryMax (384 MiB)", Math.max(...samples.map((s) => s.rss)) < MEMORY_MAX, `peak ${mib(Math.max(...samples.map((s) => s.rss)))} MiB`],
    [`compaction keeps up: no sealed segment waits > ${lagLimit} s after minute 1`, maxLag <= lagLimit, `longest wait ${maxLag.toFixed(0)} s; spool ${mib(minute1.spool)} → ${mib(last.spool)} MiB`],
    ["query latency at the end ≤ 1.5× minute 1", qEnd <= 1.5 * q1, `median ${q1.toFixed(0)} ms → ${qEnd.toFixed(0)} ms (${(qEnd / q1).toFixed(2)}×)`],
    ["no errors", queryFailures.length === 0 && counts.unexpectedCloses.length === 0 && errors.length === 0,
      `${errors.length} server ERROR lines, ${queryFailures.length} failed queries${queryFailures[0] ? ` (first: ${queryFailures[0]})` : ""}, ${counts.unexpectedCloses.length} unexpected closes${counts.unexpectedCloses[0] ? ` (first: ${counts.unexpectedCloses[0]})` : ""}`],
  ];
  console.log(`\nload: ${counts.published.toLocaleString("en-US")} published, ${counts.received.toLocaleString("en-US")} received by subscribers, ${counts.udpSent.toLocaleString("en-US")} UDP datagrams (${counts.udpGarbage.toLocaleString("en-US")} garbage)`);
  if (health?.log) console.log(`log: writable ${health.log.writable}, not stored ${health.log.not_stored}`);
  if (errors.length > 0) console.log(`server errors (${errors.length}), first:\n  ${errors.slice(0, 5).join("\n  ")}`);
  console.log("\nverdict:");
  for (const [what, ok, detail] of checks) console.log(`  ${ok ? "PASS" : "FAIL"}  ${what}: ${detail}`);
  console.log(checks.every((c) => c[1]) ? "\nsoak: PASS" : "\nsoak: FAIL");
  rmSync(dataDir, { recursive: true, force: true });
}
