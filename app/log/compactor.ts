import type { Logger } from "../core/logger.ts";
import type { CompactionResult } from "./compaction.ts";
import type { RemovedPartition } from "./retention.ts";
import { Spool } from "./spool.ts";
import { join } from "node:path";

/** What the compactor reports after each run. */
export type CompactionOutcome = { ok: true; result: CompactionResult; removed?: RemovedPartition[] } | { ok: false; error: string };

/** How long one run may take before it is called failed (and its worker stopped). */
const RUN_TIMEOUT_MS = 10 * 60_000;

/**
 * Runs compaction of the spool's sealed segments every `intervalSeconds()` (0:
 * off), one run at a time, each in a fresh worker that is ended afterwards, so
 * neither DuckDB's work nor its memory touches the hub's thread.
 */
export class Compactor {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<CompactionOutcome> | null = null;
  private worker: Worker | null = null;
  private stopped = false;
  /** The last run's outcome, and when. */
  last: { at: string; outcome: CompactionOutcome } | null = null;

  constructor(private readonly opts: {
    spool: Spool;
    logsDir: string;
    intervalSeconds: () => number;
    /** Retention of the Parquet log, applied after each run. */
    retention: () => { days: number; bytes: number };
    logger: Logger;
    onOutcome: (o: CompactionOutcome) => void;
  }) {}

  start(): void {
    this.schedule();
  }

  /** Compacts every sealed segment now (waits for a run already going). */
  runOnce(): Promise<CompactionOutcome> {
    this.running ??= this.run().finally(() => { this.running = null; });
    return this.running;
  }

  /** Stops the timer and any run in progress (its leftovers are finished by the next start). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.worker?.terminate();
  }

  private schedule(): void {
    if (this.stopped) return;
    const seconds = this.opts.intervalSeconds();
    this.timer = setTimeout(async () => {
      if (seconds > 0) await this.runOnce();
      this.schedule();
    }, Math.max(1, seconds || 60) * 1000);
    this.timer.unref?.();
  }

  private async run(): Promise<CompactionOutcome> {
    const current = this.opts.spool.current;
    const sealed = Spool.segments(this.opts.spool.dir).map((f) => join(this.opts.spool.dir, f)).filter((p) => p !== current);
    const outcome = await new Promise<CompactionOutcome>((resolve) => {
      const worker = new Worker(new URL("./compact-worker.ts", import.meta.url).href);
      this.worker = worker;
      const done = (o: CompactionOutcome) => {
        clearTimeout(limit);
        worker.terminate();
        this.worker = null;
        resolve(o);
      };
      const limit = setTimeout(() => done({ ok: false, error: `compaction took longer than ${RUN_TIMEOUT_MS / 60_000} minutes` }), RUN_TIMEOUT_MS);
      worker.onmessage = (e: MessageEvent<CompactionOutcome>) => done(e.data);
      worker.onerror = (e) => done({ ok: false, error: e.message || "the compaction worker failed" });
      worker.postMessage({ segments: sealed, logsDir: this.opts.logsDir, retention: this.opts.retention() });
    });
    this.last = { at: new Date().toISOString(), outcome };
    if (outcome.ok) {
      if (outcome.result.segments > 0) this.opts.logger.info("log compacted", { segments: outcome.result.segments, rows: outcome.result.rows, files: outcome.result.files.length });
      for (const r of outcome.removed ?? []) this.opts.logger.warn("log retention removed a partition", { path: r.path, bytes: r.bytes, reason: r.reason });
    } else {
      this.opts.logger.error("log compaction failed", { error: outcome.error });
    }
    this.opts.onOutcome(outcome);
    return outcome;
  }
}
