/**
 * The compaction process (`switchyard __compact`, started by the Compactor for
 * a run when no query process is up; otherwise the run goes to the warm query
 * process, which calls runCompactJob itself): DuckDB is loaded here only, in a
 * process of its own, so neither its memory nor a failure inside it can touch
 * the hub, and stopping it (at shutdown) is a plain kill: every step is
 * crash-safe (see compaction.ts). One frame in on stdin (the job), one out on
 * stdout (the outcome).
 */
import { encodeFrame, readFrames } from "../analytics/frames.ts";
import type { CompactionOptions } from "./compaction.ts";
import type { CompactionOutcome } from "./compactor.ts";
import type { Quarantined } from "./quarantine.ts";

/** What the Compactor asks for. */
export interface CompactJob {
  segments: string[];
  logsDir: string;
  retention: { days: number; bytes: number };
  memoryMb: number;
  giveUp: string[];
  /** Offloading is on: the Offloader applies Parquet retention (only to files verified remote), not this job. */
  offload?: boolean;
}

/** Runs one compaction job read from stdin; returns the exit code. */
export async function runCompactProcess(): Promise<number> {
  const job = await new Promise<CompactJob | null>((resolve) => {
    readFrames(Bun.stdin.stream(), (f) => resolve(f as CompactJob)).then(() => resolve(null), () => resolve(null));
  });
  if (!job) return 2;
  const reply = await runCompactJob(job);
  await new Promise<void>((resolve) => process.stdout.write(encodeFrame(reply), () => resolve()));
  return 0;
}

/**
 * Compacts `job.segments`, merges partitions due for it and applies retention,
 * in this process (a compaction child, or the warm query process, whose engine
 * hands over the segments it holds as `loaded`): the Compactor's outcome, with
 * this process's pid and peak RSS.
 */
export async function runCompactJob(job: CompactJob, loaded?: CompactionOptions["loaded"]): Promise<CompactionOutcome> {
  const { segments, logsDir, retention, memoryMb, giveUp, offload } = job;
  try {
    // DuckDB loads here: when it cannot, the outcome says why.
    const { compactSegments } = await import("./compaction.ts");
    const { mergeClosedPartitions } = await import("./merge.ts");
    const { enforceParquetRetention } = await import("./retention.ts");
    const result = await compactSegments(segments, logsDir, { memoryMb, giveUp, loaded });
    const quarantined: Quarantined[] = [];
    let mergeError: string | undefined;
    try {
      await mergeClosedPartitions(logsDir, new Date().toISOString().slice(0, 10), { memoryMb, onQuarantine: (q) => quarantined.push(q) });
    } catch (err) {
      mergeError = (err as Error).message;
    }
    // Retention runs whatever the merge did. With offloading on it is not applied here but by the
    // Offloader in the hub, in its pass after uploads and the audit: a file the audit finds wrong
    // remote is never removed by a run that read the verified rows before the audit forgot it.
    const removed = offload ? [] : enforceParquetRetention(logsDir, retention, Date.now());
    return { ok: true, result, removed, quarantined, mergeError, peakRss: process.resourceUsage().maxRSS * 1024, pid: process.pid };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}
