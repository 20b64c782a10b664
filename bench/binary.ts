/**
 * Compiled-binary benchmark: size, cold start to /healthz (first start, which
 * unpacks DuckDB's library, and second start, which checks and reuses it) and
 * idle RSS, for dist/switchyard-linux-x64 natively and dist/switchyard-linux-arm64
 * under qemu-aarch64-static (emulated: its times and RSS are qemu's, not an
 * arm64 machine's). The baseline in the same run is a `bun build --compile` of
 * a bare Bun.serve answering /healthz (bench/support/bare-healthz.ts), built
 * for the same target. Prints the ratios.
 *
 *   npm run build && npm run bench -- binary [--rounds N] [--quick]
 */
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DIST, runnerFor, type Platform } from "../test/binary-support.ts";
import { idleCpuPercent, freeTcpPort } from "./support/proc.ts";

/** VmRSS and its parts from /proc: anonymous memory, and file pages (the binary's own, shared with the page cache). */
async function rss(pid: number): Promise<{ total: number; anon: number; file: number }> {
  const status = await Bun.file(`/proc/${pid}/status`).text();
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) * 1024;
  return { total: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}

interface Start { ms: number; unpackMs: number | null }

// The same Bun runtimes as scripts/build.ts uses.
const TARGETS: Record<Platform, string> = { "linux-x64": "bun-linux-x64-baseline", "linux-arm64": "bun-linux-arm64" };
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Starts `cmd` and times spawn → first 200 from /healthz; returns the process, still running. */
async function timeToHealthz(cmd: string[], port: number, env: Record<string, string>, cwd: string, timeoutMs: number) {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, { cwd, env, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let log = "";
  void (async () => { for await (const c of p.stderr) log += new TextDecoder().decode(c); })();
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.status === 200) break;
    } catch { /* not listening yet */ }
    if (p.exitCode !== null) throw new Error(`${cmd.join(" ")} exited with ${p.exitCode}: ${log}`);
    if (performance.now() - t0 > timeoutMs) throw new Error(`${cmd.join(" ")}: no /healthz within ${timeoutMs} ms: ${log}`);
    await Bun.sleep(2);
  }
  const ms = performance.now() - t0;
  const unpack = /duckdb native library unpacked .*ms=(\d+)/.exec(log);
  return { p, ms, unpackMs: unpack ? Number(unpack[1]) : null, log: () => log };
}

async function stop(p: Bun.Subprocess) {
  p.kill("SIGTERM");
  await p.exited;
}

/** The bare baseline, compiled for `platform` into `dir`. */
async function buildBare(platform: Platform, dir: string): Promise<string> {
  const outfile = join(dir, `bare-healthz-${platform}`);
  const r = await Bun.build({ entrypoints: [join(import.meta.dir, "support", "bare-healthz.ts")], compile: { target: TARGETS[platform] as "bun-linux-x64", outfile }, minify: true });
  if (!r.success) throw new Error(`building the baseline for ${platform} failed: ${r.logs.join("\n")}`);
  return outfile;
}

async function benchPlatform(platform: Platform, rounds: number, work: string) {
  const bin = join(DIST, `switchyard-${platform}`);
  const runner = runnerFor(platform);
  if (!existsSync(bin)) return console.log(`\n${platform}: ${bin} is missing; run npm run build first`);
  if ("missing" in runner) return console.log(`\n${platform}: skipped, ${runner.missing}`);
  const emulated = runner.prefix.length > 0;
  const slow = emulated ? 10 : 1;
  const bare = await buildBare(platform, work);
  const env = (dir: string) => ({ PATH: "/usr/bin:/bin", HOME: dir, XDG_CACHE_HOME: join(dir, "cache") });
  const first: Start[] = [], second: Start[] = [], bareStart: number[] = [];
  let rssFirst = { total: 0, anon: 0, file: 0 }, rssSecond = rssFirst, rssBare = rssFirst;
  let cpuSecond = 0, cpuBare = 0;
  const cpuWindow = emulated ? 0 : 60;

  for (let r = 0; r < rounds; r++) {
    const dir = mkdtempSync(join(work, `${platform}-`));
    try {
      const sy = (port: number) => [...runner.prefix, bin, "serve", "--host", "127.0.0.1", "--port", String(port), "--udp-port", "0", "--data-dir", join(dir, "data")];
      // Alternate the order so drift on a shared machine hits both alike.
      const runBare = async () => {
        const port = freeTcpPort();
        const b = await timeToHealthz([...runner.prefix, bare, String(port)], port, env(dir), dir, 30_000 * slow);
        bareStart.push(b.ms);
        if (r === rounds - 1) { await Bun.sleep(3000); rssBare = await rss(b.p.pid); if (cpuWindow) { await Bun.sleep(7000); cpuBare = await idleCpuPercent(b.p.pid, cpuWindow); } }
        await stop(b.p);
      };
      if (r % 2 === 0) await runBare();
      const p1 = freeTcpPort();
      const a = await timeToHealthz(sy(p1), p1, env(dir), dir, 60_000 * slow);
      first.push({ ms: a.ms, unpackMs: a.unpackMs });
      if (r === rounds - 1) { await Bun.sleep(3000); rssFirst = await rss(a.p.pid); }
      await stop(a.p);
      const p2 = freeTcpPort();
      const b = await timeToHealthz(sy(p2), p2, env(dir), dir, 60_000 * slow);
      if (!/duckdb native library reused/.test(b.log())) throw new Error(`the second start did not reuse the library: ${b.log()}`);
      second.push({ ms: b.ms, unpackMs: null });
      if (r === rounds - 1) { await Bun.sleep(3000); rssSecond = await rss(b.p.pid); if (cpuWindow) { await Bun.sleep(7000); cpuSecond = await idleCpuPercent(b.p.pid, cpuWindow); } }
      await stop(b.p);
      if (r % 2 === 1) await runBare();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const size = statSync(bin).size, bareSize = statSync(bare).size;
  const f = median(first.map((s) => s.ms)), s2 = median(second.map((s) => s.ms)), bs = median(bareStart);
  const tag = emulated ? `${platform} (emulated: qemu-aarch64-static on x64)` : `${platform} (native)`;
  console.log(`\n${tag}, ${rounds} round(s), medians:`);
  console.log(`| | switchyard | bare Bun.serve | ratio |`);
  console.log(`|---|---|---|---|`);
  console.log(`| binary size | ${mib(size)} | ${mib(bareSize)} | ${(size / bareSize).toFixed(2)} |`);
  console.log(`| first start to /healthz (unpacks DuckDB) | ${f.toFixed(0)} ms (unpacking ${median(first.map((x) => x.unpackMs ?? 0))} ms) | ${bs.toFixed(0)} ms | ${(f / bs).toFixed(2)} |`);
  console.log(`| second start to /healthz (checks and reuses it) | ${s2.toFixed(0)} ms | ${bs.toFixed(0)} ms | ${(s2 / bs).toFixed(2)} |`);
  const parts = (m: typeof rssFirst) => `${mib(m.total)} (anon ${mib(m.anon)}, file ${mib(m.file)})`;
  console.log(`| idle RSS 3 s after the second start (as the service runs) | ${parts(rssSecond)} | ${parts(rssBare)} | ${(rssSecond.total / rssBare.total).toFixed(2)} |`);
  console.log(`| idle RSS 3 s after the first start | ${parts(rssFirst)} | | ${(rssFirst.total / rssBare.total).toFixed(2)} |`);
  if (cpuWindow) console.log(`| idle CPU over ${cpuWindow} s from 10 s after the second start, % of one core (target <= 0.1) | ${cpuSecond.toFixed(3)} | ${cpuBare.toFixed(3)} | |`);
  console.log(`all first starts: ${first.map((x) => x.ms.toFixed(0)).join(", ")} ms; second: ${second.map((x) => x.ms.toFixed(0)).join(", ")} ms; bare: ${bareStart.map((x) => x.toFixed(0)).join(", ")} ms`);
}

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const roundsArg = args.indexOf("--rounds");
  const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 5;
  const only = args.find((a) => a === "linux-x64" || a === "linux-arm64") as Platform | undefined;
  console.log(`binary benchmark: Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores; each first start in a fresh data dir and cache`);
  const work = mkdtempSync(join(tmpdir(), "switchyard-bench-binary-"));
  try {
    for (const p of only ? [only] : (["linux-x64", "linux-arm64"] as Platform[])) await benchPlatform(p, p === "linux-arm64" && !quick ? Math.min(rounds, 3) : rounds, work);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
