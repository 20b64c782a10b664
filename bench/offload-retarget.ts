/**
 * The hub's event loop while the offloader moves to another store (endpoint,
 * bucket or prefix changed) with many verified files still on disk: the
 * longest gap between 1 ms ticks during the pass that forgets their rows, and
 * how long that pass took. The store does not answer (nothing listens on its
 * port), so the pass stops at its first upload: what is measured is the
 * retarget and the listing.
 *
 *   npx bun bench/offload-retarget.ts [rows]    # default 50,000
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_SETTINGS } from "../app/config/settings.ts";
import { silentLogger } from "../app/core/logger.ts";
import { OffloadState } from "../app/log/offload-state.ts";
import { Offloader } from "../app/log/offloader.ts";

const rows = Number(process.argv[2] ?? 50_000);
const dataDir = mkdtempSync(join(tmpdir(), "switchyard-retarget-"));
try {
  const state = OffloadState.open(dataDir);
  const insert: { path: string; key: string }[] = [];
  for (let i = 0; i < rows; i++) {
    const day = `date=2026-${String(1 + (Math.floor(i / 100) % 12)).padStart(2, "0")}-${String(1 + (Math.floor(i / 1200) % 28)).padStart(2, "0")}`;
    const stream = `stream=s${Math.floor(i / 33_600)}`;
    const dir = join(dataDir, "logs", stream, day);
    mkdirSync(dir, { recursive: true });
    const name = `seg${i}_0_0.parquet`;
    writeFileSync(join(dir, name), "x");
    insert.push({ path: `${stream}/${day}/${name}`, key: `old/${stream}/${day}/${name}` });
  }
  await state.retarget("http://old old old", new Set());
  for (const r of insert) state.record({ ...r, size: 1, md5: "0".repeat(32), etag: "", verifiedAt: "" });
  state.close();
  const offloader = new Offloader({
    dataDir, nodeId: "bench", logger: silentLogger, retryMaxMs: 1000, credentials: () => ({ accessKeyId: "x", secretAccessKey: "y", source: "settings" }),
    settings: () => ({ ...DEFAULT_SETTINGS, offload_enabled: true, offload_s3_url: "http://127.0.0.1:9", offload_bucket: "new", offload_prefix: "new", log_retention_days: 0, log_retention_bytes: 0 }),
  });
  let last = performance.now();
  let worst = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  const started = performance.now();
  await offloader.runOnce();
  const took = performance.now() - started;
  clearInterval(ticker);
  await offloader.stop();
  const after = OffloadState.open(dataDir);
  const left = after.totals().files;
  after.close();
  console.log(`${rows} verified rows, files on disk: pass ${took.toFixed(0)} ms, longest event-loop gap ${worst.toFixed(1)} ms, rows left verified ${left}`);
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
