import { existsSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join, relative } from "node:path";
import type { Settings } from "../config/settings.ts";
import type { S3Credentials } from "../config/startup.ts";
import type { Logger } from "../core/logger.ts";
import { OffloadState } from "./offload-state.ts";
import { logChangeMark, markLogChanged } from "./partitions.ts";
import { listPartitions, planParquetRetention, type KeptUnverified, type ListedPartition, type RemovedPartition } from "./retention.ts";
import { fileSums, objectExists, offloadKey, s3Client, s3Target, storeError, uploadFile, verifyObject, type S3Target } from "./s3-store.ts";

/** What the offloader reports (GET /api/offload, /metrics, the dashboard, the alert). */
export interface OffloadStatus {
  enabled: boolean;
  endpoint: string;
  bucket: string;
  prefix: string;
  node: string;
  /** Where the credentials come from (never the credentials). */
  credentials: S3Credentials["source"] | null;
  /** Local Parquet files not yet verified remote (retention keeps them). */
  pending_files: number;
  pending_bytes: number;
  /** Files verified remote (also those retention has removed here since). */
  verified_files: number;
  verified_bytes: number;
  uploaded_files_total: number;
  uploaded_bytes_total: number;
  failures_total: number;
  /** Remote objects found wrong or missing by a check, and uploaded again. */
  mismatches_total: number;
  /** Remote objects deleted because a merge replaced their files. */
  remote_deleted_total: number;
  last_success: string | null;
  last_error: string | null;
  /** Since when every attempt failed (null: the last one worked). */
  failing_since: string | null;
  /** Upload speed of the last pass that uploaded, in MiB/s (uploaded and verified). */
  last_pass_mb_per_s: number | null;
}

/** Longest wait between retries (tests shorten it). */
const RETRY_MAX_MS = 60_000;
/** How often every local verified file is checked against its remote object. */
const AUDIT_MS = 3_600_000;
/** Retention runs at each pass that finds the log changed, and at least this often. */
const RETENTION_MS = 10 * 60_000;

/** How often retention runs while a pass works through a long upload backlog. */
const RETAIN_DURING_UPLOADS_MS = 60_000;

/** The store a target names, as offload.db records it: endpoint, bucket and prefix. */
function storeOf(t: { endpoint: string; bucket: string; prefix: string }): string {
  return `${t.endpoint} ${t.bucket} ${t.prefix}`;
}

/**
 * Uploads the log's Parquet files to S3-compatible storage, in the hub's
 * process with Bun's S3 client (no DuckDB here), one file at a time, streamed
 * (see uploadFile), so it holds no more than a part in memory and never blocks
 * the hub. Each file goes to `<prefix>/node=<id>/stream=…/date=…/<file>`, is
 * verified (size and checksum) and then recorded in OffloadState; retention
 * removes only recorded files. A failing pass is retried with backoff (1 s,
 * doubling, at most a minute). After a merge, the merged file is uploaded and
 * verified first, then its inputs' remote objects are deleted, so the store
 * never holds a day twice for longer than that step. Every hour (and on
 * `runOnce({audit:true})`) each verified file still here is checked against
 * its object again; one found wrong or missing is uploaded again.
 *
 * With offloading on, Parquet retention is applied here too (not by the
 * compaction run), last in the pass: uploads, the audit and retention's
 * deletes never overlap, so a file whose object the audit has just found wrong
 * is not verified any more when retention looks, and stays until uploaded
 * again.
 */
export class Offloader {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private state: OffloadState | null = null;
  private retryMs = 0;
  private lastAudit = 0;
  private target: S3Target | null = null;
  private client: Bun.S3Client | null = null;
  private readonly figures = { uploadedFiles: 0, uploadedBytes: 0, failures: 0, mismatches: 0, remoteDeleted: 0, lastSuccess: null as string | null, lastError: null as string | null, failingSince: null as number | null, rate: null as number | null };
  private pending = { files: 0, bytes: 0 };
  private totals: { files: number; bytes: number; at: number; stale: boolean } | null = null;
  /** The logs folder's change mark when it was last found all verified (a pass with nothing new skips the listing). */
  private settledMark: string | null = null;
  private settledAt = 0;
  private retainedMark: string | null = null;
  private retainedAt = 0;
  /** What the last retention step removed and kept (null: none ran yet). */
  lastRetention: { at: string; removed: RemovedPartition[]; kept: KeptUnverified } | null = null;

  constructor(private readonly opts: {
    dataDir: string;
    nodeId: string;
    settings: () => Settings;
    /** Credentials in force: the environment's, else the stored ones (read on each pass). */
    credentials: () => S3Credentials | null;
    logger: Logger;
    retryMaxMs?: number;
    now?: () => number;
  }) {}

  private get logsDir(): string {
    return join(this.opts.dataDir, "logs");
  }

  /** Starts the periodic passes (every minute, and after each compaction through kick()). */
  start(): void {
    this.schedule(1000);
  }

  /** Runs a pass soon (after compaction, or when the settings changed). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  /** Runs one pass now (waits for one going on first); with `audit`, checks every verified local file's object too. */
  async runOnce(opts: { audit?: boolean } = {}): Promise<void> {
    while (this.running) await this.running;
    if (opts.audit) this.lastAudit = 0;
    this.running = this.pass().finally(() => {
      this.running = null;
      // Kicked while this pass ran (a compaction finished, settings changed): another pass now.
      if (this.again) {
        this.again = false;
        this.schedule(0);
      }
    });
    await this.running;
  }

  /** Stops the passes; an upload in progress stops at its next megabyte (left unfinished, it is not in the store). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => {});
    this.state?.close();
    this.state = null;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runOnce().finally(() => {
        if (!this.timer) this.schedule(this.figures.failingSince !== null ? this.retryMs : 60_000);
      });
    }, ms);
    this.timer.unref?.();
  }

  /** The figures, for the API, /metrics and the dashboard. */
  status(): OffloadStatus {
    const s = this.opts.settings();
    // Read at most every 10 s: the alert engine asks once a second.
    if (this.state && (!this.totals || this.now() - this.totals.at > 10_000 || this.running === null && this.totals.stale)) {
      this.totals = { ...this.state.totals(), at: this.now(), stale: false };
    }
    const totals = this.totals ?? { files: 0, bytes: 0 };
    const f = this.figures;
    return {
      enabled: s.offload_enabled, endpoint: s.offload_s3_url, bucket: s.offload_bucket, prefix: s.offload_prefix, node: this.opts.nodeId,
      credentials: this.opts.credentials()?.source ?? null,
      pending_files: this.pending.files, pending_bytes: this.pending.bytes, verified_files: totals.files, verified_bytes: totals.bytes,
      uploaded_files_total: f.uploadedFiles, uploaded_bytes_total: f.uploadedBytes, failures_total: f.failures, mismatches_total: f.mismatches, remote_deleted_total: f.remoteDeleted,
      last_success: f.lastSuccess, last_error: f.lastError, failing_since: f.failingSince === null ? null : new Date(f.failingSince).toISOString(),
      last_pass_mb_per_s: f.rate,
    };
  }

  /** Milliseconds every attempt has failed for (0: not failing). */
  failingForMs(): number {
    return this.figures.failingSince === null ? 0 : this.now() - this.figures.failingSince;
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private async pass(): Promise<void> {
    const s = this.opts.settings();
    if (!s.offload_enabled || this.stopped) {
      this.figures.failingSince = null;
      return;
    }
    const target = s3Target(s, this.opts.credentials());
    try {
      await this.transfer(target);
      if (this.figures.failingSince !== null) this.opts.logger.info("log offload works again", { bucket: target.bucket });
      this.figures.failingSince = null;
      this.retryMs = 0;
    } catch (err) {
      const why = storeError(err, target.credentials);
      this.figures.failures++;
      this.figures.lastError = why;
      this.figures.failingSince ??= this.now();
      this.retryMs = Math.min(this.opts.retryMaxMs ?? RETRY_MAX_MS, Math.max(1000, this.retryMs * 2));
      this.opts.logger.warn("log offload failed; retrying", { bucket: target.bucket, error: why, retry_in_ms: this.retryMs, pending_files: this.pending.files });
    }
    // Also after a failed pass: what was verified before may go, the rest stays.
    if (this.stopped) return;
    await this.retainSafely();
  }

  /** retain(), its failure logged (the next pass tries again). */
  private async retainSafely(always = false): Promise<void> {
    try {
      await this.retain(always);
    } catch (err) {
      this.opts.logger.error("log retention failed", { error: (err as Error).message });
    }
  }

  /**
   * Parquet retention with offloading on (planParquetRetention with the
   * verified rows): removes past-limit files verified remote, each checked
   * again just before it goes (its row, its size now). A partition a merge is
   * working in (manifest or temporary file there) is left for the next pass.
   * Runs when the log or the limits changed since the last time, else every
   * RETENTION_MS; `always` during an upload backlog, where what changes is
   * which files are verified, which the log's mark does not show.
   */
  private async retain(always = false): Promise<void> {
    const s = this.opts.settings();
    const limits = { days: s.log_retention_days, bytes: s.log_retention_bytes };
    if (limits.days === 0 && limits.bytes === 0) return;
    // The limits count as part of the mark: a setting changed applies at the next pass.
    const mark = `${logChangeMark(this.logsDir)} ${limits.days} ${limits.bytes}`;
    if (!always && !mark.startsWith(" ") && mark === this.retainedMark && this.now() - this.retainedAt < RETENTION_MS) return;
    this.state ??= OffloadState.open(this.opts.dataDir);
    const state = this.state;
    // The records are of another store than the settings name (a move not finished): nothing counts as verified yet.
    if (state.target() !== storeOf(s3Target(s, null))) return;
    const kept = { files: 0, bytes: 0 };
    const removed: RemovedPartition[] = [];
    const steps = planParquetRetention(this.logsDir, await listPartitions(this.logsDir), limits, this.now(), state.verifiedSizes(), kept);
    for (const step of steps) {
      if (this.stopped) break; // what was removed so far is still marked and logged
      const p = step.partition;
      if (p.files.some((f) => f.name === ".merge" || f.name.endsWith(".parquet.tmp"))) continue;
      const rel = relative(this.logsDir, p.path);
      let bytes = 0;
      for (const name of step.files ?? []) {
        const f = p.files.find((x) => x.name === name)!;
        // Read again now: the row may be gone (audit, merge settled) since the plan was made.
        if (state.get(`${rel}/${name}`)?.size !== f.bytes) continue;
        await rm(join(p.path, name), { force: true });
        bytes += f.bytes;
      }
      if (bytes === 0) continue;
      removed.push({ path: p.path, bytes, reason: step.reason });
      await removeIfNoParquet(p);
    }
    if (removed.length > 0) {
      markLogChanged(this.logsDir);
      this.settledMark = null;
    }
    this.retainedMark = `${logChangeMark(this.logsDir)} ${limits.days} ${limits.bytes}`;
    this.retainedAt = this.now();
    this.lastRetention = { at: new Date(this.now()).toISOString(), removed, kept };
    for (const r of removed) this.opts.logger.warn("log retention removed a partition", { path: r.path, bytes: r.bytes, reason: r.reason });
    if (kept.files) this.opts.logger.warn("log retention kept files not yet verified in the remote store", { files: kept.files, bytes: kept.bytes });
  }

  /** Uploads what is not verified yet, settles merges, and (when due) checks the objects; throws on the first failure. */
  private async transfer(target: S3Target): Promise<void> {
    this.state ??= OffloadState.open(this.opts.dataDir);
    if (JSON.stringify(target) !== JSON.stringify(this.target)) {
      this.settledMark = null;
      // Another endpoint, bucket or prefix: what is here goes there too before retention may remove it.
      const where = storeOf(target);
      const before = this.state.target();
      if (before !== where) {
        if (before !== "") this.opts.logger.warn("log offload: the store changed; the files here are uploaded to the new one", { bucket: target.bucket, prefix: target.prefix });
        await this.state.retarget(where, new Set((await this.localFiles()).map((f) => f.path)));
      }
      // Only once the records are moved: a retarget that failed part way is done again at the next pass.
      this.target = target;
      this.client = s3Client(target);
    }
    const client = this.client!;
    await this.settleMerges(client);
    const mark = logChangeMark(this.logsDir);
    const auditDue = this.now() - this.lastAudit >= AUDIT_MS;
    // Nothing added or removed since everything was verified: no listing (a year of partitions is thousands of folders).
    if (!auditDue && mark !== "" && mark === this.settledMark && this.now() - this.settledAt < 10 * 60_000) return;
    const files = await this.localFiles();
    this.pending = { files: 0, bytes: 0 };
    // One query for all the rows, not one per file (a year of small files is 100,000 of them).
    const verified = this.state.verifiedSizes();
    const todo = files.filter((f) => verified.get(f.path) !== f.size);
    for (const f of todo) {
      this.pending.files++;
      this.pending.bytes += f.size;
    }
    const started = performance.now();
    let bytes = 0;
    let retainedInLoop = this.now();
    for (const f of todo) {
      if (this.stopped) return;
      await this.upload(client, f.path);
      bytes += f.size;
      this.pending.files--;
      this.pending.bytes -= f.size;
      // A long backlog (after an outage or a move to another store) does not hold retention back:
      // what is verified may go meanwhile, in the same serialized pass (never beside the audit).
      if (this.now() - retainedInLoop >= RETAIN_DURING_UPLOADS_MS) {
        retainedInLoop = this.now();
        await this.retainSafely(true);
      }
    }
    if (bytes > 0) this.figures.rate = bytes / 1048576 / Math.max(0.001, (performance.now() - started) / 1000);
    await this.settleMerges(client);
    if (auditDue) {
      await this.audit(client, files);
      this.lastAudit = this.now();
    }
    this.settledMark = mark;
    this.settledAt = this.now();
  }

  /**
   * The log's Parquet files here, by path under the logs folder, oldest date
   * first; listed with asynchronous calls, so a big log does not stall the hub.
   */
  private async localFiles(): Promise<{ path: string; size: number }[]> {
    const out: { path: string; size: number; date: string }[] = [];
    for (const p of await listPartitions(this.logsDir)) {
      const rel = relative(this.logsDir, p.path);
      for (const f of p.files) if (f.name.endsWith(".parquet")) out.push({ path: `${rel}/${f.name}`, size: f.bytes, date: p.date });
    }
    // Plain comparison, not localeCompare: many times faster over 100,000 names.
    const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
    return out.sort((a, b) => cmp(a.date, b.date) || cmp(a.path, b.path));
  }

  /**
   * Uploads one file, verifies it, and records it; throws when either fails.
   * `wasVerified`: the file was verified once (the audit found its object wrong).
   */
  private async upload(client: Bun.S3Client, path: string, wasVerified = false): Promise<void> {
    const t = this.target!;
    wasVerified ||= this.state!.get(path) !== null;
    const key = offloadKey(t.prefix, this.opts.nodeId, path);
    const where = this.state!.target();
    if (!this.state!.wrote(where, key) && this.state!.get(path)?.key !== key && await this.notOurs(client, key, path)) return;
    this.state!.writing(where, key);
    let sums;
    try {
      sums = await uploadFile(client, key, join(this.logsDir, path), () => this.stopped);
    } catch (err) {
      // Gone since the listing (a merge): nothing to upload. A file verified once should not vanish
      // (retention runs in this pass, after uploads): said loudly, as its object may be all there is.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        if (wasVerified) this.opts.logger.warn("log offload: a file verified once is gone before it could be uploaded again (merged meanwhile, or removed by hand)", { path, key });
        return;
      }
      throw new Error(`uploading ${key} failed: ${storeError(err, t.credentials)}`);
    }
    let { problem, etag } = await verifyObject(client, key, sums);
    // Some S3-compatible stores (s3rver among them) show an overwritten object's new content a moment
    // late: a mismatch right after an upload is checked again before the upload counts as failed.
    for (const ms of [100, 200, 400]) {
      if (!problem || this.stopped) break;
      await Bun.sleep(ms);
      ({ problem, etag } = await verifyObject(client, key, sums));
    }
    if (problem) throw new Error(`verifying ${key} failed: ${problem}`);
    this.state!.record({ path, key, size: sums.size, md5: sums.md5, etag, verifiedAt: new Date(this.now()).toISOString() });
    if (this.totals) this.totals.stale = true;
    this.figures.uploadedFiles++;
    this.figures.uploadedBytes += sums.size;
    this.figures.lastSuccess = new Date(this.now()).toISOString();
    this.opts.logger.debug("log offload: uploaded and verified", { key, bytes: sums.size });
  }

  /**
   * Before writing a key this box never wrote: an object already there is
   * another box's (two boxes offloading under one node id, say both named by
   * the same host name), and is never overwritten. When it is this very file
   * (same size and checksum: a record lost with a power cut), the file is
   * recorded as verified and true is returned (nothing to upload); when it is
   * not, the pass fails with what to do (also for this box's own upload whose
   * note a power cut lost), and the file stays here (not verified, retention
   * keeps it). False: no object there, upload.
   */
  private async notOurs(client: Bun.S3Client, key: string, path: string): Promise<boolean> {
    if (!(await objectExists(client, key))) return false;
    let sums;
    try {
      sums = await fileSums(join(this.logsDir, path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return true; // gone since the listing: nothing to do
      throw err;
    }
    const { problem, etag } = await verifyObject(client, key, sums);
    if (problem) {
      // offload.db notes each key before its upload without an fsync (see OffloadState.open): after a power cut,
      // an upload of this box whose check failed can look like another box's object. Both cases are named.
      const node = this.opts.nodeId;
      throw new Error(`${key} already holds an object this box did not write (${problem}): another box offloads under node=${node}, or this box wrote it and a power cut lost its note of that upload (in offload.db). Another box: give each box its own --node-id. No other box uses node=${node}: delete that object from the store and the next pass uploads this file again. Until then the file stays here, and that object is left as it is`);
    }
    this.state!.writing(this.state!.target(), key);
    this.state!.record({ path, key, size: sums.size, md5: sums.md5, etag, verifiedAt: new Date(this.now()).toISOString() });
    if (this.totals) this.totals.stale = true;
    return true;
  }

  /**
   * Deletes the remote objects of merge inputs once the merged file is verified
   * remote; drops the note of a merge that never happened (no output, no
   * manifest) or whose output retention removed before offload was on.
   */
  private async settleMerges(client: Bun.S3Client): Promise<void> {
    for (const m of this.state!.supersessions()) {
      const output = `${m.dir}/${m.output}`;
      if (!this.state!.get(output)) {
        const dir = join(this.logsDir, m.dir);
        if (existsSync(join(dir, m.output)) || existsSync(join(dir, ".merge"))) continue; // uploaded soon, or the merge is under way
        this.state!.settled(m.id);
        continue;
      }
      for (const input of m.inputs) {
        const v = this.state!.get(`${m.dir}/${input}`);
        if (!v) continue;
        await client.file(v.key).delete();
        this.state!.forget(v.path);
        if (this.totals) this.totals.stale = true;
        this.figures.remoteDeleted++;
        this.opts.logger.debug("log offload: deleted an object a merge replaced", { key: v.key });
      }
      this.state!.settled(m.id);
    }
  }

  /** Checks each verified file still here against its object; a wrong or missing one is forgotten and uploaded again. */
  private async audit(client: Bun.S3Client, files: { path: string; size: number }[]): Promise<void> {
    for (const f of files) {
      const v = this.state!.get(f.path);
      if (!v || v.size !== f.size) continue;
      const { problem } = await verifyObject(client, v.key, { size: v.size, md5: v.md5, etag: v.etag });
      if (!problem) continue;
      this.figures.mismatches++;
      this.opts.logger.warn("log offload: a remote object does not match its file; uploading it again", { key: v.key, problem });
      // It was this box's object (verified once): written again, whatever is there now.
      this.state!.writing(this.state!.target(), v.key);
      this.state!.forget(f.path);
      await this.upload(client, f.path, true);
    }
  }
}

/** Removes a partition's folder once no Parquet file is left in it (what else is there goes with it). */
async function removeIfNoParquet(p: ListedPartition): Promise<void> {
  const left = await readdir(p.path).catch(() => null);
  if (left === null || left.some((f) => f.endsWith(".parquet"))) return;
  await rm(p.path, { recursive: true, force: true });
}
