import type { Subprocess } from "bun";
import { join } from "node:path";
import { encodeFrame, readFrames } from "../analytics/frames.ts";
import type { Logger } from "../core/logger.ts";
import { runInBackground, selfCommand } from "../core/self-process.ts";
import type { CompactJob } from "./compact-process.ts";
import type { CompactionResult } from "./compaction.ts";
import type { Quarantined } from "./quarantine.ts";
import type { RemovedPartition } from "./retention.ts";
import { Spool } from "./spool.ts";

/** What the compactor reports after each run. */
export type CompactionOutcome =
  | { ok: true; result: CompactionResult; removed?: RemovedPartition[]; quarantined?: Quarantined[]; mergeError?: string; peakRss?: number; pid?: number }
  | { ok: false; error: string };

/** How long one run may take before it is called failed (and its process killed). */
const RUN_TIMEOUT_MS = 10 * 60_000;
/** Runs in a row a segment may fail before it is given up on (moved to quarantine). */
const GIVE_UP_AFTER = 3;

/**
 * A failure of the box rather than of the segment: a full or read-only disk,
 * no permission, too many open files, no memory. Such a failure never counts
 * towards giving a segment up: quarantined, its acknowledged messages would
 * leave the log's queries (a full disk for three runs took every sealed
 * segment away). The segment waits in the spool, reported and alerted at each
 * run, until the box lets it be written.
 */
export function boxFailure(error: string): boolean {
  return /\b(ENOSPC|EDQUOT|EROFS|EACCES|EPERM|EIO|EMFILE|ENFILE|ENOMEM)\b|no space left|disk quota|read-only file system|permission denied|too many open files|out of memory|cannot allocate memory/i.test(error);
}

/**
 * Sealed segments waiting that start a run at once rather than at the next
 * interval: under heavy ingest (a 64 MiB segment every few seconds at 100,000
 * msg/s) the not-yet-compacted tail, which every query reads beside the
 * Parquet files, stays a couple of segments long instead of an interval's worth.
 */
export const BACKLOG_SEGMENTS = 2;

/**
 * Runs compaction of the spool's sealed segments every `intervalSeconds()` (0:
 * off), and at once when BACKLOG_SEGMENTS are waiting, one run at a time, never in the hub's process: in the warm query
 * process when one is up (one DuckDB process rather than two side by side,
 * which is what keeps a busy box under its memory limit), else in a child
 * process (`switchyard __compact`) that exits afterwards. A run finds nothing to do without starting a process. At
 * stop, a run in progress is killed: every step of compaction is crash-safe,
 * and the next start finishes or undoes it.
 */
export class Compactor {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<CompactionOutcome> | null = null;
  private child: Subprocess | null = null;
  private stopped = false;
  /** Failed runs in a row, by segment. */
  private readonly failures = new Map<string, number>();
  /** The last run left a segment it could not write for want of disk, permission or memory (boxFailure). */
  private boxFailing = false;
  private lastChildRun = 0;
  /** The last run's outcome, and when. */
  last: { at: string; outcome: CompactionOutcome } | null = null;

  constructor(private readonly opts: {
    spool: Spool;
    logsDir: string;
    intervalSeconds: () => number;
    /** Retention of the Parquet log, applied after each run. */
    retention: () => { days: number; bytes: number };
    /** Offloading is on: the Offloader applies Parquet retention, not the compaction run. */
    offload?: () => boolean;
    /** DuckDB's memory limit for compaction, in MiB (setting log_compact_memory_mb). */
    memoryMb?: () => number;
    logger: Logger;
    onOutcome: (o: CompactionOutcome) => void;
    /**
     * Runs a job in the warm query process when one is up (null: none is),
     * so that compaction adds no third process with a DuckDB of its own.
     */
    inQueryProcess?: (job: CompactJob, timeoutMs: number) => Promise<CompactionOutcome> | null;
  }) {}

  start(): void {
    this.schedule();
  }

  /**
   * The spool sealed a segment: with compaction on and BACKLOG_SEGMENTS or more
   * sealed segments waiting, a run starts next turn (none when one is going:
   * its end looks again). Not within the call: the spool seals from inside a
   * publish. None while the last run failed or left a segment failing: those
   * are tried again at the interval, so that a segment is given up on
   * (GIVE_UP_AFTER) after that many intervals, not that many seals, and a run
   * that cannot work (a child killed for its memory) is not repeated at each seal.
   */
  sealed(): void {
    setImmediate(() => {
      if (this.stopped || this.running || this.opts.intervalSeconds() <= 0) return;
      if (this.failures.size > 0 || this.boxFailing || (this.last && !this.last.outcome.ok)) return;
      // Outside any caller: a throw here would end the hub. The interval's run tries again.
      let waiting: number;
      try {
        waiting = this.sealedSegments().length;
      } catch (err) {
        this.opts.logger.warn("log compaction: cannot list the spool for a backlog run", { error: (err as Error).message });
        return;
      }
      if (waiting >= BACKLOG_SEGMENTS) this.runOnce().catch((err) => this.opts.logger.error("log compaction failed", { error: (err as Error).message }));
    });
  }

  /** The spool's sealed segments (every one but the one being written), oldest first. */
  private sealedSegments(): string[] {
    const current = this.opts.spool.current;
    return Spool.segments(this.opts.spool.dir).map((f) => join(this.opts.spool.dir, f)).filter((p) => p !== current);
  }

  /** Compacts every sealed segment now (waits for a run already going). */
  runOnce(): Promise<CompactionOutcome> {
    this.running ??= this.run().then((o) => {
      this.running = null;
      // Segments sealed during a run that got on wait for the next: at once when they are a backlog.
      // (After a run that failed, the next interval or the next seal tries again: never in a loop.)
      if (o.ok && o.result.segments > 0) this.sealed();
      return o;
    }, (err) => {
      this.running = null;
      throw err;
    });
    return this.running;
  }

  /** Stops the timer and kills a run in progress (its leftovers are finished by the next start). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (child) {
      child.kill("SIGKILL");
      await child.exited;
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    const seconds = this.opts.intervalSeconds();
    this.timer = setTimeout(async () => {
      if (seconds > 0) await this.runOnce().catch((err) => this.opts.logger.error("log compaction failed", { error: (err as Error).message }));
      this.schedule();
    }, Math.max(1, seconds || 60) * 1000);
    this.timer.unref?.();
  }

  private async run(): Promise<CompactionOutcome> {
    const sealed = this.sealedSegments();
    // Nothing sealed: no process, and the last outcome stands (an idle box does no work).
    // Merges and retention still run hourly without new segments.
    if (sealed.length === 0 && this.last?.outcome.ok && Date.now() - this.lastChildRun < 3_600_000) return this.last.outcome;
    this.lastChildRun = Date.now();
    const job: CompactJob = {
      segments: sealed, logsDir: this.opts.logsDir, retention: this.opts.retention(), memoryMb: this.opts.memoryMb?.() ?? 128,
      giveUp: sealed.filter((s) => (this.failures.get(s) ?? 0) >= GIVE_UP_AFTER), offload: this.opts.offload?.() ?? false,
    };
    const inQuery = this.stopped ? null : this.opts.inQueryProcess?.(job, RUN_TIMEOUT_MS) ?? null;
    if (sealed.length > 0) this.opts.logger.info("log compaction started", { segments: sealed.length, memory_mb: job.memoryMb, in: inQuery ? "query process" : "compaction process" });
    const outcome = this.stopped ? { ok: false as const, error: "the server is stopping" } : await (inQuery ?? this.inChild(job));
    this.last = { at: new Date().toISOString(), outcome };
    if (outcome.ok) {
      const r = outcome.result;
      if (r.segments > 0) this.opts.logger.info("log compacted", { segments: r.segments, rows: r.rows, files: r.files.length, peak_rss_mb: outcome.peakRss ? Math.round(outcome.peakRss / 1048576) : undefined, pid: outcome.pid });
      for (const r of outcome.removed ?? []) this.opts.logger.warn("log retention removed a partition", { path: r.path, bytes: r.bytes, reason: r.reason });
      for (const q of outcome.quarantined ?? []) this.opts.logger.error("log: moved an unreadable Parquet file to quarantine", { file: q.from, to: q.to, reason: q.reason });
      if (outcome.mergeError) this.opts.logger.error("log: merging closed partitions failed", { error: outcome.mergeError });
      const failed = new Set<string>();
      this.boxFailing = false;
      for (const p of r.problems) {
        if (p.quarantined) {
          this.failures.delete(p.segment);
          this.opts.logger.error("log: moved a spool segment to quarantine", { segment: p.segment, to: p.quarantined, reason: p.error });
        } else if (boxFailure(p.error)) {
          this.boxFailing = true;
          this.opts.logger.error("log compaction failed for a segment, for want of disk, permission or memory; it stays in the spool and is tried again", { segment: p.segment, error: p.error });
        } else {
          failed.add(p.segment);
          this.failures.set(p.segment, (this.failures.get(p.segment) ?? 0) + 1);
          this.opts.logger.error("log compaction failed for a segment; the others went on", { segment: p.segment, error: p.error, failed_runs: this.failures.get(p.segment) });
        }
      }
      for (const s of [...this.failures.keys()]) if (!failed.has(s)) this.failures.delete(s);
    } else {
      this.opts.logger.error("log compaction failed", { error: outcome.error });
    }
    this.opts.onOutcome(this.alertable(outcome));
    return outcome;
  }

  /** A run with segments quarantined or failing counts as failing for the alert, saying which. */
  private alertable(o: CompactionOutcome): CompactionOutcome {
    if (!o.ok) return o;
    const lines = [
      ...o.result.problems.map((p) => p.quarantined ? `segment ${p.segment} moved to ${p.quarantined}: ${p.error}` : `segment ${p.segment}: ${p.error}`),
      ...(o.quarantined ?? []).map((q) => `${q.from} moved to ${q.to}: ${q.reason}`),
      ...(o.mergeError ? [o.mergeError] : []),
    ];
    return lines.length ? { ok: false, error: lines.join("; ") } : o;
  }

  /** Runs `job` in a compaction process and reads its one answer. */
  private inChild(job: CompactJob): Promise<CompactionOutcome> {
    return new Promise((resolve) => {
      let answer: CompactionOutcome | null = null;
      const child = Bun.spawn(selfCommand(["__compact"]), { stdin: "pipe", stdout: "pipe", stderr: "inherit", env: process.env });
      runInBackground(child.pid);
      this.child = child;
      const limit = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
      child.stdin.write(encodeFrame(job));
      void child.stdin.end();
      const frames = readFrames(child.stdout, (f) => { answer ??= f as CompactionOutcome; }).catch(() => {});
      void Promise.all([child.exited, frames]).then(([code]) => {
        clearTimeout(limit);
        this.child = null;
        resolve(answer ?? { ok: false, error: this.stopped ? "stopped at shutdown" : child.signalCode ? `the compaction process was killed (${child.signalCode})${child.signalCode === "SIGKILL" ? "; it may have run out of memory (log_compact_memory_mb) or time" : ""}` : `the compaction process exited with code ${code}` });
      });
    });
  }
}
