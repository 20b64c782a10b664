/**
 * Log offload to S3-compatible storage, against s3rver on loopback (its own
 * process): MB/s of Parquet files uploaded and verified by the Offloader
 * (streamed a megabyte at a time, checksummed, stat'ed, recorded) against a raw
 * Bun S3Client put of the same files (no verification) in the same run; the
 * uploader's peak RSS growth; and the ingest rate of a `switchyard serve`
 * process while it offloads against one that does not. Prints the ratios.
 *
 *   npm run bench -- offload [--quick]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_SETTINGS, type Settings } from "../app/config/settings.ts";
import { createLogger } from "../app/core/logger.ts";
import { Offloader } from "../app/log/offloader.ts";
import { S3_KEY_ID_SECRET, S3_SECRET_SECRET } from "../app/log/s3-store.ts";
import { SettingsStore } from "../app/config/store.ts";
import { runClient, waitForOutput } from "./support/proc.ts";
import { startSwitchyard } from "./support/switchyard-proc.ts";

const KEYS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
const PUBLISHER = join(import.meta.dir, "support", "publisher.ts");

/** `files` files of `mb` MiB of random bytes (incompressible, like zstd Parquet) under `dataDir/logs`, a day each. */
function makeLog(dataDir: string, files: number, mb: number): number {
  let total = 0;
  for (let i = 0; i < files; i++) {
    const dir = join(dataDir, "logs", "stream=bench%2Fload", `date=2026-01-${String(1 + (i % 28)).padStart(2, "0")}`);
    mkdirSync(dir, { recursive: true });
    const bytes = new Uint8Array(mb * 1048576);
    crypto.getRandomValues(bytes.subarray(0, 65536));
    for (let o = 65536; o < bytes.length; o += 65536) bytes.copyWithin(o, 0, 65536), bytes[o] = i, bytes[o + 1] = o & 255;
    writeFileSync(join(dir, `seg${i + 1}_0_0.parquet`), bytes);
    total += bytes.length;
  }
  return total;
}

interface Measured { seconds: number; growth: number; lag: number }

/** Runs `fn`, sampling this process's RSS (peak growth) and the longest event-loop stall meanwhile. */
async function measure(fn: () => Promise<void>): Promise<Measured> {
  Bun.gc(true);
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 10);
  let lag = 0;
  let last = performance.now();
  const lagTimer = setInterval(() => { const now = performance.now(); lag = Math.max(lag, now - last - 5); last = now; }, 5);
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  clearInterval(lagTimer);
  return { seconds, growth: Math.max(peak, process.memoryUsage().rss) - rss0, lag };
}

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const files = quick ? 6 : 16;
  const mb = quick ? 8 : 16;
  const s3dir = mkdtempSync(join(tmpdir(), "s3rver-bench-"));
  const s3 = Bun.spawn([process.execPath, join(import.meta.dir, "support", "s3rver-proc.ts"), s3dir], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const port = Number(await waitForOutput(s3, /port=(\d+)/));
  const endpoint = `http://127.0.0.1:${port}`;
  const work = mkdtempSync(join(tmpdir(), "offload-bench-"));
  try {
    const total = makeLog(work, files, mb);
    console.log(`log offload: ${files} files of ${mb} MiB (${(total / 1048576).toFixed(0)} MiB) to s3rver 3.7.1 on loopback (own process); Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
    const client = new Bun.S3Client({ endpoint, bucket: "logs", region: "us-east-1", ...KEYS });
    const paths: string[] = [];
    for (let i = 0; i < files; i++) paths.push(join(work, "logs", "stream=bench%2Fload", `date=2026-01-${String(1 + (i % 28)).padStart(2, "0")}`, `seg${i + 1}_0_0.parquet`));

    // Baseline: a raw put of each file (Bun reads it whole), no checksum, no stat.
    const raw = await measure(async () => {
      for (const [i, p] of paths.entries()) await client.write(`raw/${i}.parquet`, Bun.file(p));
    });
    // The Offloader, as the hub runs it: streamed, MD5 and multipart sums, stat, recorded.
    const offload = async (dataDir: string, prefix: string, expect: number) => {
      const settings: Settings = { ...DEFAULT_SETTINGS, offload_enabled: true, offload_s3_url: endpoint, offload_bucket: "logs", offload_prefix: prefix };
      const off = new Offloader({ dataDir, nodeId: "bench", settings: () => settings, credentials: () => ({ ...KEYS, source: "SWITCHYARD_S3_*" }), logger: createLogger("error", () => {}) });
      const m = await measure(() => off.runOnce());
      const st = off.status();
      await off.stop();
      if (st.uploaded_files_total !== expect || st.pending_files !== 0) throw new Error(`offload did not finish: ${JSON.stringify(st)}`);
      return m;
    };
    const off = await offload(work, "bench", files);
    // One big file (a busy day's merged partition): what each holds in memory.
    const big = mkdtempSync(join(tmpdir(), "offload-bench-big-"));
    const bigMb = quick ? 64 : 256;
    makeLog(big, 1, bigMb);
    const bigPath = join(big, "logs", "stream=bench%2Fload", "date=2026-01-01", "seg1_0_0.parquet");
    const rawBig = await measure(() => client.write("raw/big.parquet", Bun.file(bigPath)).then(() => {}));
    const offBig = await offload(big, "bench-big", 1);
    rmSync(big, { recursive: true, force: true });
    const mbs = (m: number, s: number) => (m / s).toFixed(0);
    const row = (name: string, m: number, r: Measured) => `| ${name} | ${mbs(m, r.seconds)} | ${r.seconds.toFixed(2)} | ${(r.growth / 1048576).toFixed(0)} MiB | ${r.lag.toFixed(0)} ms |`;
    const totalMb = total / 1048576;
    console.log("\n| upload | MB/s | seconds | peak RSS growth | longest event-loop stall |");
    console.log("|---|---|---|---|---|");
    console.log(row(`raw Bun S3Client put (baseline), ${files} files`, totalMb, raw));
    console.log(row(`Offloader: streamed, verified (size + MD5 ETag), recorded, ${files} files`, totalMb, off));
    console.log(row(`raw Bun S3Client put (baseline), one ${bigMb} MiB file`, bigMb, rawBig));
    console.log(row(`Offloader, one ${bigMb} MiB file`, bigMb, offBig));
    console.log(`\nOffloader / raw put: ${(raw.seconds / off.seconds).toFixed(2)}x (${files} files), ${(rawBig.seconds / offBig.seconds).toFixed(2)}x (one file)`);

    // Ingest while offloading: one publisher, 100-byte messages as fast as it can, to a serve process
    // that starts offloading a copy of the files as the publisher starts, against one with offload off.
    const messages = quick ? 600_000 : 2_000_000;
    const rows: string[] = [];
    for (const offload of [false, true, false, true]) {
      const dataDir = mkdtempSync(join(tmpdir(), "offload-bench-sy-"));
      makeLog(dataDir, files, mb);
      // The credentials as `PUT /api/offload/credentials` stores them.
      const store = SettingsStore.open(dataDir);
      store.setSecret(S3_KEY_ID_SECRET, KEYS.accessKeyId);
      store.setSecret(S3_SECRET_SECRET, KEYS.secretAccessKey);
      store.close();
      const sy = await startSwitchyard({ log_compact_seconds: 0, offload_s3_url: endpoint, offload_bucket: "logs", offload_prefix: `ingest-${Date.now()}` }, 0, dataDir);
      try {
        // Offloading starts (the settings change kicks a pass) as the publisher connects.
        if (offload) await fetch(`${sy.url}/api/settings`, { method: "PATCH", headers: sy.adminHeaders, body: JSON.stringify({ offload_enabled: true }) });
        const r = await runClient<{ seconds: number }>(PUBLISHER, { url: `ws://127.0.0.1:${sy.port}/ws/bench`, messages, bytes: 100 });
        const status = (await (await fetch(`${sy.url}/api/offload`, { headers: sy.adminHeaders })).json()) as { uploaded_bytes_total: number };
        rows.push(`| ${offload ? "offloading" : "not offloading"} | ${Math.round(messages / r.seconds).toLocaleString("en-US")} | ${r.seconds.toFixed(2)} | ${(status.uploaded_bytes_total / 1048576).toFixed(0)} MiB |`);
      } finally {
        await sy.stop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
    console.log(`\n| hub (${messages.toLocaleString("en-US")} websocket messages of 100 bytes, one publisher) | ingest msg/s | seconds | uploaded meanwhile |`);
    console.log("|---|---|---|---|");
    for (const r of rows) console.log(r);
  } finally {
    s3.kill("SIGTERM");
    await s3.exited;
    rmSync(s3dir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}
