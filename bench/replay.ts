/**
 * Catch-up benchmark: how fast a subscriber that resumes (`/ws/{stream}?after_seq=0`)
 * receives a history it missed, from the spool and from Parquet, against the
 * baseline in the same run and the same server process: a plain live subscriber
 * receiving the same number of ~100-byte messages while a publisher sends them flat out.
 * The history is written straight into the data dir's spool (as the hub would
 * write it) before the server starts. Each reader only counts frames off the TCP
 * stream, so the figures are the server's. Also the hub's peak RSS during each round.
 *
 *   npm run bench -- replay [--quick] [--messages N]
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../app/core/logger.ts";
import { Spool } from "../app/log/spool.ts";
import { countingSubscriber } from "./support/frame-counter.ts";
import { rssBytes, runClient } from "./support/proc.ts";
import { startSwitchyard, type SwitchyardProcess } from "./support/switchyard-proc.ts";

const PUBLISHER = join(import.meta.dir, "support", "publisher.ts");
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

/** Writes `n` ~100-byte messages of `stream` into the spool of `dataDir`. */
function writeHistory(dataDir: string, stream: string, n: number): void {
  const spool = Spool.open(join(dataDir, "spool"), { segmentBytes: 64 * 1024 * 1024, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
  const t0 = Date.now() * 1000 - n;
  const pad = "x".repeat(100);
  for (let seq = 1; seq <= n; seq++) {
    const head = `{"seq":${seq},"v":"`;
    const data = head + pad.slice(head.length + 2) + '"}';
    spool.append({ stream, ts: t0 + seq, seq, origin: "ws:bench:1", data, size: data.length });
    if (seq % 5000 === 0) spool.flush();
  }
  spool.flush();
  spool.close();
}

/**
 * Counts frames on `path` until `n` arrived (or, once `start`'s sender is done,
 * nothing came for 3 s: a live subscriber may be dropped from); returns msg/s
 * from the request to the last frame, how many came, the first frame's delay and the peak RSS.
 */
async function receive(sy: SwitchyardProcess, path: string, n: number, start?: () => Promise<unknown>) {
  let peak = 0;
  const sampler = setInterval(async () => { peak = Math.max(peak, await rssBytes(sy.pid)); }, 100);
  const t0 = performance.now();
  const sub = await countingSubscriber(sy.port, path);
  let sent = start === undefined;
  const sending = start?.().then(() => { sent = true; });
  let first = 0;
  let last = t0;
  let seen = 0;
  while (sub.count() < n) {
    const now = performance.now();
    if (!first && sub.count() > 0) first = now - t0;
    if (sub.count() !== seen) { seen = sub.count(); last = now; }
    if (sent && now - last > 3000) break;
    if (now - t0 > 600_000) throw new Error(`only ${sub.count()} of ${n} frames in 10 minutes on ${path}`);
    await Bun.sleep(2);
  }
  const got = sub.count();
  const seconds = (last - t0) / 1000;
  await sending;
  clearInterval(sampler);
  sub.close();
  return { perSecond: got / seconds, got, firstMs: first, peak };
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes("--quick");
  const at = args.indexOf("--messages");
  const n = at >= 0 ? Number(args[at + 1]) : quick ? 100_000 : 500_000;
  const dataDir = mkdtempSync(join(tmpdir(), "switchyard-bench-replay-"));
  try {
    writeHistory(dataDir, "history", n);
    // Compaction off for the spool round; switched on (live) for the Parquet round.
    const sy = await startSwitchyard({ log_compact_seconds: 0 }, 0, dataDir);
    try {
      console.log(`replay benchmark: ${fmt(n)} messages of ~100 bytes, one server process (pid ${sy.pid})`);
      const idle = await rssBytes(sy.pid);
      const live = await receive(sy, "/ws/live", n, () => runClient(PUBLISHER, { url: `ws://127.0.0.1:${sy.port}/ws/live`, messages: n, bytes: 100 }));
      console.log(`baseline, live subscriber while a publisher sends flat out: ${fmt(live.perSecond)} msg/s (${fmt(live.got)} received), peak RSS ${mib(live.peak)} (idle ${mib(idle)})`);
      const spool = await receive(sy, "/ws/history?after_seq=0", n);
      console.log(`replay from the spool (after_seq=0):                       ${fmt(spool.perSecond)} msg/s (${(spool.perSecond / live.perSecond).toFixed(2)}x live), first message after ${fmt(spool.firstMs)} ms, peak RSS ${mib(spool.peak)}`);
      const r = await fetch(`${sy.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ log_compact_seconds: 1 }), headers: sy.adminHeaders });
      if (!r.ok) throw new Error(`PATCH /api/settings: ${r.status} ${await r.text()}`);
      const logs = join(dataDir, "logs", "stream=history");
      const deadline = Date.now() + 600_000;
      const hasParquet = () => { try { return readdirSync(logs, { recursive: true }).some((f) => String(f).endsWith(".parquet")); } catch { return false; } };
      while (Spool.segments(join(dataDir, "spool")).length > 1 || !hasParquet()) {
        if (Date.now() > deadline) throw new Error("the history was not compacted within 10 minutes");
        await Bun.sleep(500);
      }
      const parquet = await receive(sy, "/ws/history?after_seq=0", n);
      console.log(`replay from Parquet (after_seq=0):                         ${fmt(parquet.perSecond)} msg/s (${(parquet.perSecond / live.perSecond).toFixed(2)}x live), first message after ${fmt(parquet.firstMs)} ms, peak RSS ${mib(parquet.peak)}`);
    } finally {
      await sy.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
