import { DuckDBInstance } from "@duckdb/node-api";
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { OffloadState } from "./offload-state.ts";
import { quarantineFile, type Quarantined } from "./quarantine.ts";
import { rowGroupOptions } from "./compaction.ts";
import { datePartitions, logFileProblem, markLogChanged } from "./partitions.ts";

const MANIFEST = ".merge";

/** Steps of merging one partition; a test may stop the process at any of them. */
export const MERGE_STEPS = ["written", "manifest", "renamed", "inputs-removed"] as const;
export type MergeStep = (typeof MERGE_STEPS)[number];

/**
 * A partition still being written (today's) is merged too once it holds this
 * many files from compaction runs (`seg…`): only those, never an earlier merged
 * file, so a busy day's log is not rewritten again and again, and queries do not
 * slow down as the day's small files pile up.
 */
export const OPEN_PARTITION_MERGE_AT = 16;

/**
 * Merges the Parquet files of each closed partition (a date before `today`,
 * YYYY-MM-DD) that holds more than one file into one file, ordered by ts, so the
 * log is a few large files rather than many small ones; and, in a partition of
 * today or later, the files of compaction runs once there are
 * OPEN_PARTITION_MERGE_AT of them. Exactly once across a
 * crash: the merged file is written under a temporary name, a manifest naming
 * inputs and output is fsynced, the output renamed into place, then the inputs
 * removed; a later run completes an interrupted merge (or drops it, when the
 * rename had not happened). Returns the partitions merged.
 */
export async function mergeClosedPartitions(logsDir: string, today: string, opts: { crashAt?: MergeStep; memoryMb?: number; onQuarantine?: (q: Quarantined) => void } = {}): Promise<string[]> {
  const todo: { dir: string; open: boolean }[] = [];
  for (const { path: dir, date } of datePartitions(logsDir)) {
    recover(dir);
    const files = readdirSync(dir).filter((f) => f.endsWith(".parquet"));
    if (date < today ? files.length > 1 : files.filter(isRunFile).length >= OPEN_PARTITION_MERGE_AT) todo.push({ dir, open: date >= today });
  }
  if (todo.length === 0) return [];
  const crash = (step: MergeStep) => { if (opts.crashAt === step) process.kill(process.pid, "SIGKILL"); };
  const db = await DuckDBInstance.create(":memory:", { threads: "1", memory_limit: `${opts.memoryMb ?? 128}MB`, preserve_insertion_order: "false" });
  const conn = await db.connect();
  // With offloading (ever) on, each merge is noted, so the inputs' remote objects are deleted once the output is verified there.
  const offload = OffloadState.openIfExists(dirname(logsDir));
  const merged: string[] = [];
  const problems: string[] = [];
  try {
    for (const { dir, open } of todo) {
      // An unreadable file goes to quarantine, so it cannot stop this merge (or retention after it).
      const inputs: string[] = [];
      for (const f of readdirSync(dir).filter((f) => f.endsWith(".parquet") && (!open || isRunFile(f))).sort()) {
        const problem = await logFileProblem(conn, join(dir, f));
        if (problem) opts.onQuarantine?.(quarantineFile(dirname(logsDir), join(dir, f), problem));
        else inputs.push(f);
      }
      if (inputs.length < 2) continue;
      const output = `merged_${Date.now()}.parquet`;
      const tmp = join(dir, `${output}.tmp`);
      const list = inputs.map((f) => `'${join(dir, f).replaceAll("'", "''")}'`).join(", ");
      try {
        await conn.run(`COPY (SELECT * FROM read_parquet([${list}], hive_partitioning = false) ORDER BY ts, seq) TO '${tmp.replaceAll("'", "''")}' (FORMAT parquet, COMPRESSION zstd, ${rowGroupOptions(opts.memoryMb ?? 128)})`);
      } catch (err) {
        rmSync(tmp, { force: true });
        problems.push(`${dir}: ${(err as Error).message.split("\n")[0]}`);
        continue;
      }
      crash("written");
      const manifest = join(dir, MANIFEST);
      writeFileSync(manifest, JSON.stringify({ inputs, output }));
      const fd = openSync(manifest, "r");
      fsyncSync(fd);
      closeSync(fd);
      offload?.supersede(relative(logsDir, dir), inputs, output);
      crash("manifest");
      renameSync(tmp, join(dir, output));
      crash("renamed");
      // force: with offloading on, retention (in the hub) may have removed a verified input meanwhile.
      for (const f of inputs) rmSync(join(dir, f), { force: true });
      markLogChanged(logsDir);
      crash("inputs-removed");
      unlinkSync(manifest);
      merged.push(dir);
    }
  } finally {
    offload?.close();
    conn.closeSync();
    db.closeSync();
  }
  if (problems.length > 0) throw new Error(`merging closed partitions failed: ${problems.join("; ")}`);
  return merged;
}

/** A file written by one compaction run (seg<N>_…), as opposed to a merged one. */
function isRunFile(name: string): boolean {
  return name.startsWith("seg") && name.endsWith(".parquet");
}

/** Completes or drops a merge a crash interrupted in `dir`. */
function recover(dir: string): void {
  const manifest = join(dir, MANIFEST);
  if (existsSync(manifest)) {
    const { inputs, output } = JSON.parse(readFileSync(manifest, "utf8")) as { inputs: string[]; output: string };
    if (existsSync(join(dir, output))) {
      // The merged file is in place: the inputs are its duplicates.
      for (const f of inputs) rmSync(join(dir, f), { force: true });
    }
    unlinkSync(manifest);
  }
  for (const f of readdirSync(dir)) if (f.endsWith(".parquet.tmp")) unlinkSync(join(dir, f));
}
