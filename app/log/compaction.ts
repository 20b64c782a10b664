import { DuckDBInstance } from "@duckdb/node-api";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { loadSegments } from "./rows.ts";

/** The steps of compacting one segment; a test may stop the process at any of them. */
export const COMPACTION_STEPS = ["read", "parquet", "manifest", "moved-one", "moved", "segment-removed"] as const;
export type CompactionStep = (typeof COMPACTION_STEPS)[number];

/** What a compaction run did. */
export interface CompactionResult {
  segments: number;
  rows: number;
  files: string[];
  recovered: number;
}

const TMP_PREFIX = ".tmp-";
const MANIFEST = "MANIFEST";

/**
 * Turns sealed spool segments into hive-partitioned Parquet files under
 * `logsDir` (`stream=…/date=YYYY-MM-DD/seg<N>_<i>.parquet`, zstd, row groups of
 * 100k rows), oldest segment first, through DuckDB. Columns: ts (TIMESTAMP,
 * µs, UTC), stream, seq, origin, kind (text|binary), data (text as is, binary as
 * base64), date.
 *
 * Exactly once, whatever step a crash hits: files are written to
 * `logsDir/.tmp-<N>/`, listed in a MANIFEST (fsynced), renamed into place one by
 * one, and only then is the segment removed. A later run finishes or undoes what
 * a crashed one left: no MANIFEST, start over; a MANIFEST, finish the moves.
 */
export async function compactSegments(segmentPaths: string[], logsDir: string, opts: { crashAt?: CompactionStep; threads?: number; memoryLimit?: string } = {}): Promise<CompactionResult> {
  mkdirSync(logsDir, { recursive: true });
  const result: CompactionResult = { segments: 0, rows: 0, files: [], recovered: recoverLeftovers(logsDir, segmentPaths) };
  const pending = segmentPaths.filter((p) => existsSync(p));
  if (pending.length === 0) return result;
  const db = await DuckDBInstance.create(":memory:", { threads: String(opts.threads ?? 1), memory_limit: opts.memoryLimit ?? "128MB" });
  const conn = await db.connect();
  const crash = (step: CompactionStep) => {
    if (opts.crashAt === step) process.kill(process.pid, "SIGKILL");
  };
  try {
    for (const segment of pending) {
      const n = segmentNumber(segment);
      const tmp = join(logsDir, `${TMP_PREFIX}${n}`);
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
      const rows = await loadSegments(conn, "batch", [segment]);
      crash("read");
      if (rows > 0) {
        await conn.run(`COPY (SELECT make_timestamp(ts_us) AS ts, stream, seq, origin, kind, data, strftime(make_timestamp(ts_us), '%Y-%m-%d') AS date FROM batch ORDER BY stream, ts_us)
          TO '${tmp.replaceAll("'", "''")}' (FORMAT parquet, PARTITION_BY (stream, date), COMPRESSION zstd, ROW_GROUP_SIZE 100000, FILENAME_PATTERN 'seg${n}_{i}')`);
      }
      crash("parquet");
      const files = listFiles(tmp).filter((f) => f.endsWith(".parquet"));
      const manifest = join(tmp, MANIFEST);
      writeFileSync(manifest, files.join("\n") + "\n");
      syncFile(manifest);
      crash("manifest");
      moveInto(tmp, logsDir, files, () => crash("moved-one"));
      crash("moved");
      unlinkSync(segment);
      crash("segment-removed");
      rmSync(tmp, { recursive: true, force: true });
      result.segments++;
      result.rows += rows;
      result.files.push(...files);
    }
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  return result;
}

/** Finishes or undoes what a crashed run left in `logsDir`; returns how many leftovers it handled. */
function recoverLeftovers(logsDir: string, segmentPaths: string[]): number {
  let handled = 0;
  for (const entry of readdirSync(logsDir)) {
    if (!entry.startsWith(TMP_PREFIX)) continue;
    const tmp = join(logsDir, entry);
    const n = entry.slice(TMP_PREFIX.length);
    const segment = segmentPaths.find((p) => segmentNumber(p) === n);
    const manifest = join(tmp, MANIFEST);
    if (segment && existsSync(segment) && existsSync(manifest)) {
      // The Parquet files were complete: move what is left, then the segment goes.
      const files = readFileSync(manifest, "utf8").split("\n").filter(Boolean);
      moveInto(tmp, logsDir, files.filter((f) => existsSync(join(tmp, f))));
      unlinkSync(segment);
    }
    // No MANIFEST: the write was cut short, start over. Segment gone: all was moved already.
    rmSync(tmp, { recursive: true, force: true });
    handled++;
  }
  return handled;
}

function moveInto(tmp: string, logsDir: string, files: string[], afterFirst?: () => void): void {
  let first = true;
  for (const f of files) {
    const to = join(logsDir, f);
    mkdirSync(dirname(to), { recursive: true });
    renameSync(join(tmp, f), to);
    if (first) afterFirst?.();
    first = false;
  }
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out.sort();
}

function syncFile(path: string): void {
  const fd = openSync(path, "r");
  fsyncSync(fd);
  closeSync(fd);
}

/** The number of a spool segment file (0000000000000012.wal → "12"), as compacted file names carry it (seg12_0.parquet). */
export function segmentNumber(path: string): string {
  return String(Number(basename(path).replace(/\.wal$/, "")));
}
