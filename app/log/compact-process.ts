/**
 * The compaction process (`switchyard __compact`, started by the Compactor for
 * each run): DuckDB is loaded here only, in a process of its own, so neither
 * its memory nor a failure inside it can touch the hub, and stopping it (at
 * shutdown) is a plain kill: every step is crash-safe (see compaction.ts). One
 * frame in on stdin (the job), one out on stdout (the outcome).
 */
import { encodeFrame, readFrames } from "../analytics/frames.ts";
import type { Quarantined } from "./quarantine.ts";

/** What the Compactor asks for. */
export interface CompactJob {
  segments: string[];
  logsDir: string;
  retention: { days: number; bytes: number };
  memoryMb: number;
  giveUp: string[];
}

/** Runs one compaction job read from stdin; returns the exit code. */
export async function runCompactProcess(): Promise<number> {
  const job = await new Promise<CompactJob | null>((resolve) => {
    readFrames(Bun.stdin.stream(), (f) => resolve(f as CompactJob)).then(() => resolve(null), () => resolve(null));
  });
  if (!job) return 2;
  const { segments, logsDir, retention, memoryMb, giveUp } = job;
  let reply: unknown;
  try {
    // DuckDB loads here: when it cannot, the outcome says why.
    const { compactSegments } = await import("./compaction.ts");
    const { mergeClosedPartitions } = await import("./merge.ts");
    const { enforceParquetRetention } = await import("./retention.ts");
    const result = await compactSegments(segments, logsDir, { memoryMb, giveUp });
    const quarantined: Quarantined[] = [];
    let mergeError: string | undefined;
    try {
      await mergeClosedPartitions(logsDir, new Date().toISOString().slice(0, 10), { memoryMb, onQuarantine: (q) => quarantined.push(q) });
    } catch (err) {
      mergeError = (err as Error).message;
    }
    // Retention runs whatever the merge did.
    const removed = enforceParquetRetention(logsDir, retention);
    reply = { ok: true, result, removed, quarantined, mergeError, peakRss: process.resourceUsage().maxRSS * 1024 };
  } catch (err) {
    reply = { ok: false, error: (err as Error).message };
  }
  await new Promise<void>((resolve) => process.stdout.write(encodeFrame(reply), () => resolve()));
  return 0;
}
