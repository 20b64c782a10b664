import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { markLogChanged } from "./partitions.ts";
import { quarantineFile } from "./quarantine.ts";
import { HEADER_BYTES, locateRecord, scanRecords, type RecordFields } from "./record.ts";
import { LOG_ROW_COLUMNS, LogRowChunks } from "./rows.ts";
import type { SegmentDamage } from "./spool.ts";

/** The steps of compacting one segment; a test may stop the process at any of them. */
export const COMPACTION_STEPS = ["read", "parquet", "manifest", "moved-one", "moved", "segment-removed"] as const;
export type CompactionStep = (typeof COMPACTION_STEPS)[number];

/** What a compaction run did. */
export interface CompactionResult {
  segments: number;
  rows: number;
  files: string[];
  recovered: number;
  /** Segments read from their files (the others were written from the query engine's tables). */
  readFromFile: number;
  /** Segments that could not be (fully) compacted: quarantined, or left for the next run. */
  problems: SegmentProblem[];
}

const TMP_PREFIX = ".tmp-";
const MANIFEST = "MANIFEST";
/** Beside the MANIFEST when the segment had unreadable records: it goes to quarantine, not away. */
const DAMAGED = "DAMAGED";

/** How a compaction run may use memory and threads. */
export interface CompactionOptions {
  crashAt?: CompactionStep;
  threads?: number;
  /** DuckDB's memory limit in MiB (setting log_compact_memory_mb); batches are sized to fit it. */
  memoryMb?: number;
  /** Segments to give up on: quarantined without being compacted (they failed run after run). */
  giveUp?: string[];
  /**
   * Where a segment's records are already in a DuckDB table (the query
   * engine's spool tail, QueryEngine.loadedSegment): written from there rather
   * than read from the file again. Null: read the file.
   */
  loaded?: (segment: string) => Promise<LoadedSegment | null>;
}

/** Every record of a sealed segment, undamaged, in a table of LOG_ROW_COLUMNS (in insertion order). */
export interface LoadedSegment {
  conn: DuckDBConnection;
  table: string;
  rows: number;
  /** Compaction is done with the connection. */
  release(): void;
}

/** A log row of LOG_ROW_COLUMNS as the Parquet files hold it (ts a TIMESTAMP, the date partition). */
const PARQUET_ROW_DATE = "strftime(make_timestamp(ts_us), '%Y-%m-%d')";
/** The columns a Parquet file of the log holds (stream and date are its folders). */
const PARQUET_FILE_COLUMNS = "make_timestamp(ts_us) AS ts, seq, origin, kind, data";
const PARQUET_ROW = `make_timestamp(ts_us) AS ts, stream, seq, origin, kind, data, ${PARQUET_ROW_DATE} AS date`;

/** A segment that could not be (fully) compacted, and what became of it. */
export interface SegmentProblem {
  segment: string;
  error: string;
  /** Where the segment went (quarantine), when it was moved. */
  quarantined?: string;
  /** Unreadable byte ranges (the records there are lost to the Parquet log; the segment is kept in quarantine). */
  damage?: SegmentDamage[];
}

/** Rows per batch at most (a Parquet row group). */
const BATCH_ROWS = 100_000;

/**
 * The COPY options that bound a Parquet file's row groups by rows (BATCH_ROWS)
 * and by bytes: DuckDB's Parquet writer holds a whole row group in memory, and
 * 100,000 rows of 1 KiB payloads that do not compress (or 64 of 1 MiB, a full
 * segment) are a row group of 64-85 MiB, past a 128 MB memory limit. The byte
 * bound (1/16 of the memory limit, 8 MB at the default) works only in a DuckDB
 * that does not preserve insertion order (compaction's and the merge's own).
 */
export const rowGroupOptions = (memoryMb: number) => `ROW_GROUP_SIZE ${BATCH_ROWS}, ROW_GROUP_SIZE_BYTES '${Math.max(2, Math.floor(memoryMb / 16))}MB'`;

/**
 * Turns sealed spool segments into hive-partitioned Parquet files under
 * `logsDir` (`stream=…/date=YYYY-MM-DD/seg<N>_0_0.parquet`, zstd, row
 * groups of up to 100k rows), oldest segment first, through DuckDB. Columns: ts
 * (TIMESTAMP, µs, UTC), stream, seq, origin, kind (text|binary), data (text as
 * is, binary as base64), date.
 *
 * A segment the query engine already holds (`opts.loaded`) is written from its
 * table in one COPY. Otherwise it is streamed through DuckDB's appender in
 * batches (at most 100k rows and 1/32 of the memory limit of payload each),
 * each sorted and written as its own files, which are then joined (streamed,
 * in order) into one file per partition: any segment the spool can make fits
 * in the memory limit.
 *
 * Exactly once, whatever step a crash hits: files are written to
 * `logsDir/.tmp-<N>/`, listed in a MANIFEST (fsynced), renamed into place one by
 * one, and only then is the segment removed. A later run finishes or undoes what
 * a crashed one left: no MANIFEST, start over; a MANIFEST, finish the moves.
 *
 * One bad segment does not stop the others: a segment with unreadable records
 * has its intact records compacted and is then moved to quarantine (never
 * deleted); a segment whose compaction fails is reported in `problems`, its
 * temp files removed, and the run goes on.
 */
export async function compactSegments(segmentPaths: string[], logsDir: string, opts: CompactionOptions = {}): Promise<CompactionResult> {
  mkdirSync(logsDir, { recursive: true });
  const dataDir = dirname(logsDir);
  const result: CompactionResult = { segments: 0, rows: 0, files: [], recovered: recoverLeftovers(logsDir, segmentPaths), readFromFile: 0, problems: [] };
  const pending = segmentPaths.filter((p) => existsSync(p));
  for (const segment of pending.filter((p) => opts.giveUp?.includes(p))) {
    const q = quarantineFile(dataDir, segment, "compaction failed on it run after run");
    result.problems.push({ segment, error: "compaction failed on it run after run", quarantined: q.to });
  }
  const todo = pending.filter((p) => !opts.giveUp?.includes(p));
  if (todo.length === 0) return result;
  const memoryMb = opts.memoryMb ?? 128;
  // A DuckDB of compaction's own, opened when a segment has to be read from its file.
  let own: { db: DuckDBInstance; conn: DuckDBConnection } | null = null;
  const openOwn = async () => {
    const db = await DuckDBInstance.create(":memory:", { threads: String(opts.threads ?? 1), memory_limit: `${memoryMb}MB`, preserve_insertion_order: "false" });
    return { db, conn: await db.connect() };
  };
  const crash = (step: CompactionStep) => {
    if (opts.crashAt === step) process.kill(process.pid, "SIGKILL");
  };
  try {
    for (const segment of todo) {
      const n = segmentNumber(segment);
      const tmp = join(logsDir, `${TMP_PREFIX}${n}`);
      try {
        rmSync(tmp, { recursive: true, force: true });
        mkdirSync(tmp, { recursive: true });
        let rows = -1;
        let damage: SegmentDamage[] = [];
        const loaded = await opts.loaded?.(segment).catch(() => null) ?? null;
        if (loaded) {
          // Already in the query engine's tail: one COPY of the whole segment, no second read of the
          // file (0.8 s of CPU for a full segment against 2.2). Rows go in insertion order, which per
          // stream is seq order and so ts order (the hub's clock never goes back within a process).
          try {
            await copyLoaded(loaded, tmp, n);
            rows = loaded.rows;
          } catch {
            // The engine's memory is shared with the queries running: its failure is no reason to
            // count against the segment. Read from the file instead, in a DuckDB of compaction's own.
            rmSync(tmp, { recursive: true, force: true });
            mkdirSync(tmp, { recursive: true });
          } finally {
            loaded.release();
          }
        }
        if (rows < 0) {
          own ??= await openOwn();
          result.readFromFile++;
          ({ rows, damage } = await compactFile(own.conn, segment, tmp, n, memoryMb));
        }
        crash("read");
        crash("parquet");
        const files = listFiles(tmp).filter((f) => f.endsWith(".parquet"));
        if (damage.length > 0) writeFileSync(join(tmp, DAMAGED), JSON.stringify(damage));
        const manifest = join(tmp, MANIFEST);
        writeFileSync(manifest, files.join("\n") + "\n");
        syncFile(manifest);
        crash("manifest");
        moveInto(tmp, logsDir, files, () => crash("moved-one"));
        markLogChanged(logsDir);
        crash("moved");
        if (damage.length > 0) {
          const q = quarantineFile(dataDir, segment, `unreadable records: ${describeDamage(damage)}; the ${rows} intact records were compacted`);
          result.problems.push({ segment, error: `unreadable records: ${describeDamage(damage)}`, quarantined: q.to, damage });
        } else {
          // Gone already when spool retention removed it meanwhile: its records are in the Parquet log now.
          rmSync(segment, { force: true });
        }
        crash("segment-removed");
        rmSync(tmp, { recursive: true, force: true });
        result.segments++;
        result.rows += rows;
        result.files.push(...files);
      } catch (err) {
        // This segment stays for the next run; its half-written files go now.
        rmSync(tmp, { recursive: true, force: true });
        result.problems.push({ segment, error: (err as Error).message });
      }
    }
  } finally {
    own?.conn.closeSync();
    own?.db.closeSync();
  }
  return result;
}

/**
 * A segment of at most this many partitions (stream and date) held by the
 * engine is written one partition at a time (copyLoaded); one of more, by one
 * COPY … PARTITION_BY.
 */
const FEW_PARTITIONS = 8;

/** A partition folder's name as DuckDB's PARTITION_BY writes it: `key=` and the value URL-encoded, all but ASCII letters, digits and `-_.~`, as %XX. */
export function hiveFolder(key: string, value: string): string {
  return `${key}=${encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}

/**
 * Writes the rows of a segment the query engine holds (`loaded`) into `tmp` as
 * compaction's hive partitions, files named `seg<N>_0_0.parquet`. DuckDB's
 * PARTITION_BY holds every row it is given until 524,288 (a whole segment)
 * before it writes any: a busy stream's segment of 450,000 rows took the
 * engine's memory limit, which its queries and spool tables share, and pushed
 * them out to the temp folder (47-64 MB), slowing every query meanwhile. A
 * segment of few partitions (a handful of busy streams) is written one
 * partition at a time by a plain COPY, which writes each row group as it
 * fills: nothing spills, and it takes 17-59 % less CPU. (DuckDB's setting for
 * that buffer is one for the whole database: at 50,000 rows, a segment of 200
 * streams became 1,000 files of row groups of 256 rows.) The folders are named
 * as PARTITION_BY names them (hiveFolder), checked against DuckDB once.
 */
async function copyLoaded(loaded: LoadedSegment, tmp: string, n: string): Promise<void> {
  const { conn, table } = loaded;
  const parts = (await conn.runAndReadAll(`SELECT stream, ${PARQUET_ROW_DATE} AS date FROM ${table} GROUP BY ALL LIMIT ${FEW_PARTITIONS + 1}`)).getRows() as [string, string][];
  if (parts.length > FEW_PARTITIONS || !(await foldersNamedAsDuckDB(conn, tmp))) {
    await conn.run(`COPY (SELECT ${PARQUET_ROW} FROM ${table}) ${partitioned(tmp, `seg${n}_0_{i}`)}`);
    return;
  }
  let written = 0;
  for (const [stream, day] of parts) {
    const dir = join(tmp, hiveFolder("stream", stream), hiveFolder("date", day));
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `seg${n}_0_0.parquet`).replaceAll("'", "''");
    const prepared = await conn.prepare(`COPY (SELECT ${PARQUET_FILE_COLUMNS} FROM ${table} WHERE stream = $1 AND ${PARQUET_ROW_DATE} = $2) TO '${file}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${BATCH_ROWS})`);
    try {
      prepared.bind([stream, day]);
      written += Number((await prepared.runAndReadAll()).getRows()[0]?.[0] ?? 0);
    } finally {
      prepared.destroySync();
    }
  }
  // Every row once, or the segment is read from its file instead (the caller's fallback): never a row lost unseen.
  if (written !== loaded.rows) throw new Error(`the partitions written hold ${written} rows, the segment ${loaded.rows}`);
}

/** Every printable ASCII character but '/' (a space included) and two multi-byte ones: more than a stream's name may hold, each escaped or not as DuckDB does. */
const ESCAPE_PROBE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("").replace("/", "") + "é🦆";
let escapingChecked: boolean | null = null;

/**
 * True when hiveFolder names a folder as this DuckDB's PARTITION_BY does
 * (found once per process, under `tmp`; a check that failed, out of memory
 * say, says no this time and is made again the next).
 */
async function foldersNamedAsDuckDB(conn: DuckDBConnection, tmp: string): Promise<boolean> {
  if (escapingChecked !== null) return escapingChecked;
  const dir = join(tmp, ".escape-check");
  try {
    await conn.run(`COPY (SELECT '${ESCAPE_PROBE.replaceAll("'", "''")}' AS stream, 1 AS x) TO '${dir.replaceAll("'", "''")}' (FORMAT parquet, PARTITION_BY (stream))`);
    escapingChecked = readdirSync(dir).join() === hiveFolder("stream", ESCAPE_PROBE);
    return escapingChecked;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The COPY options that write a segment's rows into `dir` as hive partitions (stream, date), files named by `pattern`. */
const partitioned = (dir: string, pattern: string) =>
  `TO '${dir.replaceAll("'", "''")}' (FORMAT parquet, PARTITION_BY (stream, date), COMPRESSION zstd, ROW_GROUP_SIZE ${BATCH_ROWS}, OVERWRITE_OR_IGNORE, FILENAME_PATTERN '${pattern}')`;

/**
 * Reads segment `segment` from its file and writes its records into `tmp` as
 * Parquet, through `conn`, in batches that fit `memoryMb`; returns the records
 * written and the unreadable stretches passed over.
 */
async function compactFile(conn: DuckDBConnection, segment: string, tmp: string, n: string, memoryMb: number): Promise<{ rows: number; damage: SegmentDamage[] }> {
  const batchBytes = Math.max(2, Math.floor(memoryMb / 32)) * 1024 * 1024;
  const damage: SegmentDamage[] = [];
  let rows = 0;
  let batches = 0;
  const write = async () => {
    // Sorted: a segment's streams interleave, and a batch's rows of one stream go to one file.
    await conn.run(`COPY (SELECT ${PARQUET_ROW} FROM batch ORDER BY stream, ts_us) ${partitioned(tmp, `seg${n}_${batches}_{i}`)}`);
    // A new table each batch: DuckDB keeps a deleted table's memory, a dropped one's it gives back.
    await conn.run(`CREATE OR REPLACE TABLE batch (${LOG_ROW_COLUMNS})`);
    batches++;
    // The batch's decoded messages are garbage now: collect them before the next, so the
    // process's memory stays flat over a whole segment (measured: 270 MB peak for a full
    // 64 MiB segment with the default 128 MB, against 450 MB without).
    Bun.gc(true);
  };
  await conn.run(`CREATE OR REPLACE TABLE batch (${LOG_ROW_COLUMNS})`);
  let appender = await conn.createAppender("batch");
  let chunks = new LogRowChunks(appender);
  let inBatch = 0;
  let bytes = 0;
  const fields: RecordFields = { kind: 0, ts: 0, seq: 0, streamStart: 0, streamEnd: 0, originStart: 0, originEnd: 0, dataStart: 0, next: 0 };
  /** Adds the record `fields` locates; true when the batch is full (then `nextBatch`). */
  const add = (): boolean => {
    chunks.addRecord(buf, fields);
    inBatch++;
    rows++;
    const dataBytes = fields.next - fields.dataStart;
    bytes += 64 + (fields.streamEnd - fields.streamStart) + (fields.originEnd - fields.originStart) + (fields.kind === 2 ? Math.ceil(dataBytes * 4 / 3) : dataBytes);
    return inBatch >= BATCH_ROWS || bytes >= batchBytes;
  };
  const nextBatch = async () => {
    chunks.flush();
    appender.closeSync();
    await write();
    appender = await conn.createAppender("batch");
    chunks = new LogRowChunks(appender);
    inBatch = 0;
    bytes = 0;
  };
  // Every message record in order, each copied to DuckDB straight from its bytes (LogRowChunks).
  // Records are checked as Spool.read checks them; from the first bad one on, the rest is read
  // as Spool.read reads it (scanRecords: resynchronising past each unreadable stretch, which
  // goes into `damage`).
  const buf = readFileSync(segment);
  let o = 0;
  while (o < buf.length) {
    const r = locateRecord(buf, o, fields);
    if (r === "message") {
      o = fields.next;
      if (add()) await nextBatch();
    } else if (r === "marks") {
      o += HEADER_BYTES + buf.readUInt32LE(o);
    } else {
      for (const step of scanRecords(buf, o)) {
        if (!("record" in step)) damage.push({ offset: step.damage.offset, bytes: step.damage.bytes, reason: step.damage.reason });
        else if ("message" in step.record && locateRecord(buf, step.offset, fields) === "message" && add()) await nextBatch();
      }
      break;
    }
  }
  chunks.flush();
  appender.closeSync();
  if (inBatch > 0) await write();
  if (batches > 1) await concatenateBatches(conn, tmp, n, memoryMb);
  return { rows, damage };
}

/**
 * Joins the batch files of each partition in `tmp` into one file
 * (`seg<N>_0.parquet`), streaming them in order (batches are sorted and in
 * segment order), so a segment makes one file per partition however many
 * batches it took.
 */
async function concatenateBatches(conn: DuckDBConnection, tmp: string, n: string, memoryMb: number): Promise<void> {
  const byDir = new Map<string, string[]>();
  for (const f of listFiles(tmp).filter((f) => f.endsWith(".parquet"))) {
    const dir = dirname(join(tmp, f));
    byDir.set(dir, [...(byDir.get(dir) ?? []), join(tmp, f)]);
  }
  for (const [dir, files] of byDir) {
    if (files.length < 2) continue;
    files.sort((a, b) => batchOf(a) - batchOf(b));
    const list = files.map((f) => `'${f.replaceAll("'", "''")}'`).join(", ");
    await conn.run(`COPY (SELECT * FROM read_parquet([${list}], hive_partitioning = false)) TO '${join(dir, `seg${n}_all.parquet`).replaceAll("'", "''")}' (FORMAT parquet, COMPRESSION zstd, ${rowGroupOptions(memoryMb)})`);
    for (const f of files) unlinkSync(f);
    renameSync(join(dir, `seg${n}_all.parquet`), join(dir, `seg${n}_0_0.parquet`));
  }
}

/** The batch number in a batch file's name (seg12_3_0.parquet → 3). */
const batchOf = (path: string) => Number(/_(\d+)_\d+\.parquet$/.exec(path)?.[1] ?? 0);

/** "at byte 120 (40 bytes: bad_crc), …" */
export function describeDamage(damage: SegmentDamage[]): string {
  return damage.map((d) => `at byte ${d.offset} (${d.bytes} bytes: ${d.reason})`).join(", ");
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
      markLogChanged(logsDir);
      if (existsSync(join(tmp, DAMAGED))) quarantineFile(dirname(logsDir), segment, `unreadable records: ${describeDamage(JSON.parse(readFileSync(join(tmp, DAMAGED), "utf8")))}`);
      else unlinkSync(segment);
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
