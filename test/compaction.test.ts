import { DuckDBInstance } from "@duckdb/node-api";
import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../app/core/logger.ts";
import type { Message } from "../app/core/message.ts";
import { COMPACTION_STEPS, compactSegments } from "../app/log/compaction.ts";
import { Spool } from "../app/log/spool.ts";
import { inTempDir, tempDir } from "./support/server.ts";

// DuckDB, Parquet files and subprocesses killed with SIGKILL: more than Bun's 5 s default.
setDefaultTimeout(60_000);

const CRASH = join(import.meta.dir, "support", "compact-crash.ts");
const msg = (stream: string, seq: number, data: string | Uint8Array): Message =>
  ({ stream, ts: Date.UTC(2026, 10, 23, 12) * 1000 + seq, seq, origin: "test", data, size: typeof data === "string" ? Buffer.byteLength(data) : data.byteLength });

/** Writes `n` messages over two streams into a spool that rolls every ~2 KB, and closes it. */
function spoolWith(dir: string, n: number): string[] {
  const spool = Spool.open(dir, { segmentBytes: 2048, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
  for (let i = 1; i <= n; i++) {
    spool.append(msg(i % 2 ? "lab/rig-1" : "spin30", i, i % 10 === 0 ? new Uint8Array([i % 256, 0, 255]) : `{"v":${i}}`));
    if (i % 10 === 0) spool.flush();
  }
  spool.close();
  return Spool.segments(dir).map((f) => join(dir, f));
}

async function query(sql: string): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(":memory:");
  const c = await db.connect();
  const rows = (await c.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
  c.closeSync();
  db.closeSync();
  return rows;
}

describe("compaction to Parquet", () => {
  it("writes hive-partitioned zstd Parquet that any DuckDB can read, and removes the segments", async () => {
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      const logsDir = join(dir, "logs");
      const segments = spoolWith(spoolDir, 100);
      expect(segments.length).toBeGreaterThan(2);
      const r = await compactSegments(segments, logsDir);
      expect(r).toMatchObject({ segments: segments.length, rows: 100, recovered: 0, readFromFile: segments.length });
      expect(Spool.segments(spoolDir)).toEqual([]);
      expect(r.files.every((f) => /^stream=(lab%2Frig-1|spin30)\/date=2026-11-23\/seg\d+_\d+_\d+\.parquet$/.test(f))).toBe(true);
      const glob = `read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true)`;
      expect(await query(`SELECT stream, count(*)::INT AS n, min(seq)::INT AS first, max(seq)::INT AS last FROM ${glob} GROUP BY 1 ORDER BY 1`)).toEqual([
        { stream: "lab/rig-1", n: 50, first: 1, last: 99 },
        { stream: "spin30", n: 50, first: 2, last: 100 },
      ]);
      const [row] = await query(`SELECT strftime(ts, '%Y-%m-%dT%H:%M:%S.%f') AS ts, kind, data, origin FROM ${glob} WHERE seq = 7`);
      expect(row).toEqual({ ts: "2026-11-23T12:00:00.000007", kind: "text", data: '{"v":7}', origin: "test" });
      const [bin] = await query(`SELECT kind, data FROM ${glob} WHERE seq = 20`);
      expect(bin).toEqual({ kind: "binary", data: Buffer.from([20, 0, 255]).toString("base64") });
      const [codec] = await query(`SELECT DISTINCT compression FROM parquet_metadata('${logsDir}/**/*.parquet')`);
      expect(codec).toEqual({ compression: "ZSTD" });
    });
  });

  it.each(COMPACTION_STEPS.flatMap((step) => [[step, "its file"], [step, "the query engine's table"]]))("loses and duplicates nothing when the compactor is killed after step %s, writing from %s", async (step, from) => {
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      const logsDir = join(dir, "logs");
      const segments = spoolWith(spoolDir, 60);
      const fromEngine = from !== "its file";
      const p = Bun.spawn([process.execPath, CRASH, JSON.stringify({ segments, logsDir, crashAt: step, fromEngine })], { stdout: "pipe", stderr: "pipe" });
      await p.exited;
      expect(p.signalCode).toBe("SIGKILL");
      if (fromEngine) expect(readFileSync(join(dir, "given"), "utf8")).toBe(`${segments[0]}\n`);
      // The next run finishes or redoes what the killed one left.
      const r = await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), logsDir);
      expect(r.recovered).toBe(1);
      expect(Spool.segments(spoolDir)).toEqual([]);
      const rows = await query(`SELECT seq::INT AS seq, count(*)::INT AS n FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) GROUP BY 1 ORDER BY 1`);
      expect(rows.map((x) => x.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect(rows.every((x) => x.n === 1)).toBe(true);
    });
  });
});

describe("payloads that do not compress", () => {
  /** A spool whose first segments (of `segmentBytes`) are filled with random binary payloads of `size` bytes, sealed; their paths and the messages in them. */
  function randomSpool(dir: string, size: number, segmentBytes: number, segments: number) {
    const { randomBytes } = require("node:crypto") as typeof import("node:crypto");
    const spool = Spool.open(dir, { segmentBytes, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
    const t0 = Date.UTC(2026, 10, 23, 12) * 1000;
    let n = 0;
    while (Spool.segments(dir).length <= segments) {
      n++;
      spool.append({ stream: "blob", ts: t0 + n, seq: n, origin: "t", data: new Uint8Array(randomBytes(size)), size });
      if (n % 64 === 0) spool.flush();
    }
    spool.close();
    const paths = Spool.segments(dir).slice(0, segments).map((f) => join(dir, f));
    return { paths, messages: n - 1 };
  }

  for (const [name, size] of [["1 KiB", 1024], ["1 MiB (the default max_message_bytes)", 1024 * 1024]] as const) {
    it(`compacts a full default segment (64 MiB) of ${name} random payloads within the default 128 MB, in row groups of at most 8 MB`, async () => {
      await inTempDir(async (dir) => {
        const { paths } = randomSpool(join(dir, "spool"), size, 64 * 1024 * 1024, 1);
        const r = await compactSegments(paths, join(dir, "logs"), { memoryMb: 128 });
        expect(r.problems).toEqual([]);
        const meta = await query(`SELECT count(*)::INT AS groups, max(total_compressed_size)::BIGINT AS biggest, sum(row_group_num_rows)::INT AS rows FROM (SELECT DISTINCT file_name, row_group_id, row_group_num_rows, sum(total_compressed_size) OVER (PARTITION BY file_name, row_group_id) AS total_compressed_size FROM parquet_metadata('${dir}/logs/**/*.parquet'))`);
        expect(meta[0]!.rows).toBe(r.rows);
        expect(r.rows).toBeGreaterThan(size === 1024 ? 40_000 : 40);
        expect(Number(meta[0]!.biggest)).toBeLessThan(12 * 1024 * 1024);
        const seqs = await query(`SELECT min(seq)::INT AS lo, max(seq)::INT AS hi, count(DISTINCT seq)::INT AS n FROM read_parquet('${dir}/logs/**/*.parquet')`);
        expect(seqs[0]).toEqual({ lo: 1, hi: r.rows, n: r.rows });
      });
    });
  }

  it("merges a closed day of them (four 16 MiB segments of 1 KiB payloads) within 128 MB, rows in (ts, seq) order", async () => {
    const { mergeClosedPartitions } = await import("../app/log/merge.ts");
    await inTempDir(async (dir) => {
      const { paths } = randomSpool(join(dir, "spool"), 1024, 16 * 1024 * 1024, 4);
      const logsDir = join(dir, "logs");
      const r = await compactSegments(paths, logsDir, { memoryMb: 128 });
      expect(r.problems).toEqual([]);
      expect(await mergeClosedPartitions(logsDir, "2026-11-24", { memoryMb: 128 })).toHaveLength(1);
      const rows = await query(`SELECT seq::INT AS seq FROM read_parquet('${logsDir}/**/*.parquet')`);
      expect(rows.length).toBe(r.rows);
      expect(rows.every((row, i) => row.seq === i + 1)).toBe(true);
    });
  });
});

describe("compaction from the query engine's spool tail", () => {
  /** Every row of the Parquet log under `logsDir`, in (stream, seq) order, with what each file is called. */
  const allRows = (logsDir: string) =>
    query(`SELECT stream, seq::INT AS seq, strftime(ts, '%Y-%m-%dT%H:%M:%S.%f') AS ts, origin, kind, data, date::VARCHAR AS date FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) ORDER BY stream, seq`);

  it("writes the rows the engine holds, exactly as from the file, and reads the file for what it does not hold", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { cpSync, readFileSync, writeFileSync } = await import("node:fs");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      const segments = spoolWith(spoolDir, 100);
      // The same segments compacted from their files, apart: the reference.
      cpSync(spoolDir, join(dir, "copy"), { recursive: true });
      await compactSegments(Spool.segments(join(dir, "copy")).map((f) => join(dir, "copy", f)), join(dir, "reference"));
      const reference = await allRows(join(dir, "reference"));
      expect(reference.length).toBe(100);
      // One sealed segment damaged in its middle: the engine's tail stops there, so compaction reads that file.
      const damaged = segments[1]!;
      const bytes = readFileSync(damaged);
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
      writeFileSync(damaged, bytes);
      const logsDir = join(dir, "logs");
      const engine = await QueryEngine.open({ logsDir, spoolDir, tempDir: join(dir, "tmp") });
      try {
        const asked: string[] = [];
        const given: string[] = [];
        const r = await compactSegments(segments, logsDir, {
          loaded: async (segment) => {
            asked.push(segment);
            const l = await engine.loadedSegment(segment);
            if (l) given.push(segment);
            return l;
          },
        });
        expect(asked).toEqual(segments);
        expect(given).toEqual(segments.filter((s) => s !== damaged));
        expect(r.segments).toBe(segments.length);
        expect(r.readFromFile).toBe(1);
        expect(r.problems.map((p) => [p.segment, Boolean(p.quarantined)])).toEqual([[damaged, true]]);
        // Every intact record once, each column as the file path writes it.
        const rows = await allRows(logsDir);
        const lost = reference.filter((x) => !rows.some((y) => y.stream === x.stream && y.seq === x.seq));
        expect(rows.length + lost.length).toBe(100);
        expect(lost.length).toBeGreaterThan(0); // the damaged record(s)
        expect(rows).toEqual(reference.filter((x) => !lost.includes(x)));
        // The engine drops its tables of the compacted segments and reads the Parquet instead: each message once.
        const [count] = (await engine.query("SELECT count(*)::INT AS n, count(DISTINCT stream || seq)::INT AS d FROM messages")).rows;
        expect(count).toEqual({ n: rows.length, d: rows.length });
      } finally {
        engine.close();
      }
    });
  });

  it("writes binary payloads, invalid UTF-8 in text payloads and NUL characters from the engine's table exactly as from the file", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { cpSync, mkdirSync, writeFileSync } = await import("node:fs");
    const { encodeRecord } = await import("../app/log/record.ts");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      mkdirSync(spoolDir);
      /** A text record whose payload bytes are `bytes` (whatever they are), its CRC right. */
      const rawText = (seq: number, bytes: number[]) => {
        const r = encodeRecord(msg("spin30", seq, "x".repeat(bytes.length)));
        r.set(bytes, r.length - bytes.length);
        r.writeUInt32LE(Bun.hash.crc32(r.subarray(8)), 4);
        return r;
      };
      const records = [
        encodeRecord(msg("spin30", 1, "plain")),
        rawText(2, [0x61, 0xff, 0xfe, 0x62]), // invalid UTF-8
        rawText(3, [0xc3, 0x28, 0xe2, 0x82]), // a bad sequence, then one cut short
        encodeRecord(msg("spin30", 4, "a\u0000b")),
        encodeRecord(msg("lab/rig-1", 5, new Uint8Array([0, 255, 0, 128]))),
        encodeRecord(msg("lab/rig-1", 6, new Uint8Array(0))),
        encodeRecord(msg("lab/rig-1", 7, "")),
        encodeRecord(msg("spin30", 8, "\u{1F600} ok")),
      ];
      const segment = join(spoolDir, "0000000000000001.wal");
      writeFileSync(segment, Buffer.concat(records));
      writeFileSync(join(spoolDir, "0000000000000002.wal"), encodeRecord(msg("spin30", 9, "next")));
      cpSync(spoolDir, join(dir, "copy"), { recursive: true });
      await compactSegments([join(dir, "copy", "0000000000000001.wal")], join(dir, "reference"));
      const engine = await QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir, tempDir: join(dir, "tmp") });
      try {
        const r = await compactSegments([segment], join(dir, "logs"), { loaded: (s) => engine.loadedSegment(s) });
        expect(r).toMatchObject({ segments: 1, rows: 8, readFromFile: 0, problems: [] });
        const rowsOf = (logsDir: string) =>
          query(`SELECT stream, seq::INT AS seq, kind, data, hex(encode(data)) AS bytes FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) ORDER BY seq`);
        const reference = await rowsOf(join(dir, "reference"));
        expect(await rowsOf(join(dir, "logs"))).toEqual(reference);
        // What the file path writes: bad UTF-8 as U+FFFD, NUL kept, binary as base64.
        expect(reference.map((x) => x.data)).toEqual(["plain", "a\uFFFD\uFFFDb", "\uFFFD(\uFFFD", "a\u0000b", "AP8AgA==", "", "", "\u{1F600} ok"]);
      } finally {
        engine.close();
      }
    });
  });

  it("writes every field of records at the edges of DuckDB's strings (12/13 bytes, a character cut by the prefix, NUL, not UTF-8) as decodeRecord reads them, from the file over several batches and from the engine's table", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { cpSync, mkdirSync, writeFileSync } = await import("node:fs");
    const { decodedRows, EDGE_STRINGS, rawRecord } = await import("./support/edge-records.ts");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      mkdirSync(spoolDir);
      // Streams name folders (stream=…): the edge strings a folder name can hold.
      const streams = EDGE_STRINGS.filter((b) => b.length > 0 && !b.includes(0));
      const n = EDGE_STRINGS.length;
      const records: Buffer[] = [];
      let seq = 1;
      for (let rep = 0; rep < 12; rep++) {
        for (let i = 0; i < n; i++, seq++) {
          records.push(rawRecord(seq, streams[(i + rep) % streams.length]!, EDGE_STRINGS[i]!, EDGE_STRINGS[(i + 2 * rep + 1) % n]!, rep % 4 === 3 ? 2 : 1));
        }
        // Larger payloads between them: over 2 MiB in all, so compaction (64 MB) takes more than one batch.
        for (let k = 0; k < 100; k++, seq++) records.push(rawRecord(seq, streams[k % streams.length]!, Buffer.from("filler"), Buffer.from(`${seq}${"f".repeat(3000)}`)));
      }
      const bytes = Buffer.concat(records);
      expect(bytes.length).toBeGreaterThan(3 * 1024 * 1024);
      const segment = join(spoolDir, "0000000000000001.wal");
      writeFileSync(segment, bytes);
      writeFileSync(join(spoolDir, "0000000000000002.wal"), rawRecord(seq, Buffer.from("spin30"), Buffer.from("t"), Buffer.from("next")));
      cpSync(spoolDir, join(dir, "copy"), { recursive: true });
      const expected = decodedRows(bytes).map((r) => ({ ...r, ts: String(r.ts) }));
      const rowsOf = (logsDir: string) =>
        query(`SELECT seq::INT AS seq, epoch_us(ts)::VARCHAR AS ts, stream, origin, kind, data FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) ORDER BY seq`);
      const fromFile = await compactSegments([join(dir, "copy", "0000000000000001.wal")], join(dir, "from-file"), { memoryMb: 64 });
      expect(fromFile).toMatchObject({ segments: 1, rows: expected.length, readFromFile: 1, problems: [] });
      expect(await rowsOf(join(dir, "from-file"))).toEqual(expected);
      const engine = await QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir, tempDir: join(dir, "tmp") });
      try {
        const r = await compactSegments([segment], join(dir, "logs"), { loaded: (s) => engine.loadedSegment(s) });
        expect(r).toMatchObject({ segments: 1, rows: expected.length, readFromFile: 0, problems: [] });
        expect(await rowsOf(join(dir, "logs"))).toEqual(expected);
      } finally {
        engine.close();
      }
    });
  });

  it("writes a segment the spool cut back after the engine read it (a failed write) as the file is now, not as the engine first read it", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { appendFileSync, cpSync, readFileSync, truncateSync } = await import("node:fs");
    const { encodeRecord } = await import("../app/log/record.ts");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      const segments = spoolWith(spoolDir, 60);
      const engine = await QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir, tempDir: join(dir, "tmp") });
      try {
        const rowsOf = (logsDir: string) => query(`SELECT stream, seq::INT AS seq, data FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) ORDER BY stream, seq`);
        const [first, second] = segments as [string, string];
        // first: its last record cut off (never acknowledged). second: its last record cut and another of
        // the same length written in its place (the next write after the cut), so the size is unchanged.
        const last = (path: string) => {
          const bytes = readFileSync(path);
          let o = 0;
          let start = 0;
          while (o < bytes.length) { start = o; o += 8 + bytes.readUInt32LE(o); }
          return start;
        };
        truncateSync(first, last(first));
        const cut = last(second);
        const old = readFileSync(second).subarray(cut);
        truncateSync(second, cut);
        const replacement = encodeRecord(msg("spin30", 9999, "r".repeat(old.length - encodeRecord(msg("spin30", 9999, "")).length)));
        expect(replacement.length).toBe(old.length);
        appendFileSync(second, replacement);
        cpSync(spoolDir, join(dir, "copy"), { recursive: true });
        await compactSegments([first, second].map((p) => join(dir, "copy", p.slice(p.lastIndexOf("/") + 1))), join(dir, "reference"));
        const r = await compactSegments([first, second], join(dir, "logs"), { loaded: (s) => engine.loadedSegment(s) });
        expect(r).toMatchObject({ segments: 2, readFromFile: 0, problems: [] });
        const reference = await rowsOf(join(dir, "reference"));
        expect(reference.some((x) => x.seq === 9999)).toBe(true);
        expect(await rowsOf(join(dir, "logs"))).toEqual(reference);
        expect(r.rows).toBe(reference.length);
      } finally {
        engine.close();
      }
    });
  });

  it("reads the file when writing from the engine's table fails, without counting it against the segment", async () => {
    const { DuckDBInstance } = await import("@duckdb/node-api");
    await inTempDir(async (dir) => {
      const segments = spoolWith(join(dir, "spool"), 40);
      const db = await DuckDBInstance.create(":memory:");
      const conn = await db.connect();
      let released = 0;
      try {
        // A table that is not there: the COPY fails, as it would when the engine's memory ran out.
        const r = await compactSegments(segments, join(dir, "logs"), { loaded: async () => ({ conn, table: "gone", rows: 999, release: () => { released++; } }) });
        expect(r).toMatchObject({ segments: segments.length, rows: 40, readFromFile: segments.length, problems: [] });
        expect(released).toBe(segments.length);
        const [row] = await query(`SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM read_parquet('${join(dir, "logs")}/**/*.parquet')`);
        expect(row).toEqual({ n: 40, d: 40 });
      } finally {
        conn.closeSync();
        db.closeSync();
      }
    });
  });

  it("writes a segment that spool retention removed while compaction had its table, once, and counts it done", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { existsSync, unlinkSync } = await import("node:fs");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      const logsDir = join(dir, "logs");
      const segments = spoolWith(spoolDir, 40);
      const engine = await QueryEngine.open({ logsDir, spoolDir, tempDir: join(dir, "tmp") });
      try {
        const first = segments[0]!;
        let held = 0;
        const r = await compactSegments([first], logsDir, {
          loaded: async (segment) => {
            const l = await engine.loadedSegment(segment);
            held = l!.rows;
            // Retention removes the segment now; queries come (their refreshes find it gone) before the COPY.
            unlinkSync(segment);
            for (let i = 0; i < 3; i++) await engine.query("SELECT count(*) FROM messages");
            return l;
          },
        });
        expect(held).toBeGreaterThan(0);
        expect(r).toMatchObject({ segments: 1, rows: held, readFromFile: 0, problems: [] });
        expect(existsSync(first)).toBe(false);
        const [row] = await query(`SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM read_parquet('${logsDir}/**/*.parquet')`);
        expect(row).toEqual({ n: held, d: held });
        // The engine: every message once, and the table gone now that compaction let go of it.
        const [count] = (await engine.query("SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM messages")).rows;
        expect(count).toEqual({ n: 40, d: 40 });
        const tables = (await engine.query("SELECT table_name FROM duckdb_tables() WHERE table_name = 'tail_1'")).rows;
        expect(tables).toEqual([]);
      } finally {
        engine.close();
      }
    });
  });

  it("hands over no table for a segment the engine has not read to its end", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { appendFileSync } = await import("node:fs");
    const { encodeRecord } = await import("../app/log/record.ts");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      const segments = spoolWith(spoolDir, 30);
      const engine = await QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir, tempDir: join(dir, "tmp") });
      try {
        const first = segments[0]!;
        const held = await engine.loadedSegment(first);
        expect(held?.rows).toBeGreaterThan(0);
        held!.release();
        // A record half-written at the end (a segment cut short): the engine stops before it; no table.
        appendFileSync(first, encodeRecord(msg("spin30", 999, "late")).subarray(0, 10));
        expect(await engine.loadedSegment(first)).toBeNull();
        expect(await engine.loadedSegment(join(spoolDir, "0000000000009999.wal"))).toBeNull();
      } finally {
        engine.close();
      }
    });
  });

  it("writes a segment of few partitions one partition at a time into the folders PARTITION_BY names, whatever the stream's name", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { cpSync, mkdirSync, writeFileSync } = await import("node:fs");
    const { encodeRecord } = await import("../app/log/record.ts");
    const { hiveFolder } = await import("../app/log/compaction.ts");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      mkdirSync(spoolDir);
      // Four streams over two days: eight partitions, written one by one. Names with what a folder escapes.
      const streams = ["a b", "x!'()*~-_.", "50%/é\\back", "😀=?#&:+,;@$"];
      const day = Date.UTC(2026, 10, 23, 23, 59, 59) * 1000;
      const records: Buffer[] = [];
      for (let seq = 1; seq <= 400; seq++) {
        const stream = streams[seq % 4]!;
        records.push(encodeRecord({ stream, ts: day + seq * 10_000, seq, origin: "test", data: seq % 5 === 0 ? new Uint8Array([seq % 256, 0]) : `{"v":${seq}}`, size: 8 }));
      }
      const segment = join(spoolDir, "0000000000000001.wal");
      writeFileSync(segment, Buffer.concat(records));
      writeFileSync(join(spoolDir, "0000000000000002.wal"), encodeRecord(msg("spin30", 1, "next")));
      cpSync(spoolDir, join(dir, "copy"), { recursive: true });
      const reference = await compactSegments([join(dir, "copy", "0000000000000001.wal")], join(dir, "reference"));
      const engine = await QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir, tempDir: join(dir, "tmp") });
      try {
        const r = await compactSegments([segment], join(dir, "logs"), { loaded: (s) => engine.loadedSegment(s) });
        expect(r).toMatchObject({ segments: 1, rows: 400, readFromFile: 0, problems: [] });
        // The same files in the same folders as DuckDB's PARTITION_BY wrote from the file, and the same rows.
        expect(r.files.toSorted()).toEqual(reference.files.toSorted());
        expect(r.files.length).toBe(8);
        // hiveFolder names them as PARTITION_BY did (each stream's two days under its folder).
        for (const stream of streams) expect(reference.files.filter((f) => f.startsWith(`${hiveFolder("stream", stream)}/date=`)).length).toBe(2);
        const rowsOf = (logsDir: string) =>
          query(`SELECT seq::INT AS seq, epoch_us(ts)::VARCHAR AS ts, stream, date::VARCHAR AS date, origin, kind, data, filename[${logsDir.length + 2}:] AS file FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true, filename = true) ORDER BY seq`);
        const rows = await rowsOf(join(dir, "logs"));
        expect(rows).toEqual(await rowsOf(join(dir, "reference")));
        expect(new Set(rows.map((x) => x.stream))).toEqual(new Set(streams));
        expect(new Set(rows.map((x) => x.date))).toEqual(new Set(["2026-11-23", "2026-11-24"]));
        const [count] = (await engine.query("SELECT count(*)::INT AS n, count(DISTINCT stream)::INT AS s FROM messages WHERE stream <> 'spin30'")).rows;
        expect(count).toEqual({ n: 400, s: 4 });
      } finally {
        engine.close();
      }
    });
  });

  it("compacts a stream of the longest name allowed, from its file and from the engine's table (its folder 255 bytes, each '/' as %2F)", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { cpSync } = await import("node:fs");
    const { streamNameProblem } = await import("../app/core/stream-name.ts");
    await inTempDir(async (dir) => {
      const longest = `${"ab/".repeat(24)}${"x".repeat(128)}`;
      expect(streamNameProblem(longest)).toBeNull();
      expect(streamNameProblem(`${longest.slice(0, -3)}/xy`)).toContain("allowed");
      const spoolDir = join(dir, "spool");
      const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
      for (let i = 1; i <= 20; i++) spool.append(msg(longest, i, `{"v":${i}}`));
      spool.flush();
      spool.close();
      const [segment] = Spool.segments(spoolDir).map((f) => join(spoolDir, f));
      cpSync(spoolDir, join(dir, "copy"), { recursive: true });
      const fromFile = await compactSegments([join(dir, "copy", Spool.segments(spoolDir)[0]!)], join(dir, "from-file"));
      expect(fromFile).toMatchObject({ segments: 1, rows: 20, problems: [] });
      const engine = await QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir, tempDir: join(dir, "tmp") });
      try {
        const r = await compactSegments([segment!], join(dir, "logs"), { loaded: (s) => engine.loadedSegment(s) });
        expect(r).toMatchObject({ segments: 1, rows: 20, problems: [] });
        expect(r.files).toEqual(fromFile.files);
        expect(r.files[0]!.split("/")[0]!.length).toBe(255);
        // (min(stream) over a hive column is an internal error in this DuckDB with its default optimizers.)
        const rows = await query(`SELECT stream AS s, count(*)::INT AS n FROM read_parquet('${join(dir, "logs")}/**/*.parquet', hive_partitioning = true) GROUP BY stream`);
        expect(rows).toEqual([{ s: longest, n: 20 }]);
      } finally {
        engine.close();
      }
    });
  });

  it("writes a big segment of one stream from the engine's table without spilling the engine's memory to disk", async () => {
    const { QueryEngine } = await import("../app/analytics/engine.ts");
    const { readdirSync, statSync } = await import("node:fs");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      const logsDir = join(dir, "logs");
      const tmp = join(dir, "tmp");
      // 450,000 messages of one stream and day in one segment, as a busy publisher leaves one.
      const spool = Spool.open(spoolDir, { segmentBytes: 1 << 30, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
      const rows = 450_000;
      for (let i = 1; i <= rows; i++) {
        spool.append(msg("ingest", i, `{"n":${i},"pad":"${"x".repeat(60)}"}`));
        if (i % 5_000 === 0) spool.flush();
      }
      spool.close();
      const [segment] = Spool.segments(spoolDir).map((f) => join(spoolDir, f));
      // The COPY shares the engine's memory limit (the default, 128 MB): DuckDB's default partition buffer
      // (524,288 rows) held every row of the segment beside its table, and spilled 47 MB to the temp folder.
      const engine = await QueryEngine.open({ logsDir, spoolDir, tempDir: tmp, memoryLimit: "128MB" });
      try {
        let spilled = 0;
        let copying = true;
        const watch = (async () => {
          while (copying) {
            for (const f of readdirSync(tmp)) spilled = Math.max(spilled, statSync(join(tmp, f), { throwIfNoEntry: false })?.size ?? 0);
            await Bun.sleep(2);
          }
        })();
        const r = await compactSegments([segment!], logsDir, { loaded: (s) => engine.loadedSegment(s) }).finally(() => { copying = false; });
        await watch;
        expect(r).toMatchObject({ segments: 1, rows, readFromFile: 0, problems: [] });
        expect(spilled).toBe(0);
        const [row] = await query(`SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM read_parquet('${logsDir}/**/*.parquet')`);
        expect(row).toEqual({ n: rows, d: rows });
      } finally {
        engine.close();
      }
    });
  });
});

describe("the server compacts its log", () => {
  it("turns sealed segments into Parquet in the background while the hub runs", async () => {
    const { offsetClock, startTestServer, waitFor } = await import("./support/server.ts");
    const clock = offsetClock(); // segments age by it: no waiting a second for one to seal
    const srv = await startTestServer({ log_segment_seconds: 1, log_compact_seconds: 1 }, { clock });
    try {
      const post = (body: string) => fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body, headers: { "content-type": "text/plain" } });
      await post("first");
      clock.advance(1100);
      await post("second"); // the first segment is now past its age: sealed at this write
      const logsDir = join(srv.dataDir, "logs");
      await waitFor(() => srv.compactor.last?.outcome.ok === true && (srv.compactor.last.outcome as { result: { rows: number } }).result.rows > 0, "a compaction run", 15_000);
      const rows = await query(`SELECT data FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) ORDER BY seq`);
      expect(rows.map((r) => r.data)).toContain("first");
    } finally {
      await srv.close();
    }
  });

  it("starts a run as soon as sealed segments make a backlog, without waiting for the interval", async () => {
    const { Compactor, BACKLOG_SEGMENTS } = await import("../app/log/compactor.ts");
    const { waitFor } = await import("./support/server.ts");
    await inTempDir(async (dir) => {
      let onSeal = () => {};
      const spool = Spool.open(join(dir, "spool"), { segmentBytes: 2048, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger, onSeal: () => onSeal() });
      const outcomes: boolean[] = [];
      const compactor = new Compactor({ spool, logsDir: join(dir, "logs"), intervalSeconds: () => 3600, retention: () => ({ days: 0, bytes: 0 }), logger: silentLogger, onOutcome: (o) => outcomes.push(o.ok) });
      onSeal = () => compactor.sealed();
      compactor.start();
      try {
        const sealed = () => Spool.segments(spool.dir).length - 1;
        let seq = 0;
        const write = () => {
          spool.append(msg("spin30", ++seq, `{"v":${seq},"pad":"${"x".repeat(40)}"}`));
          spool.flush();
        };
        // Fewer sealed segments than a backlog: they wait for the interval (an hour here).
        while (sealed() < BACKLOG_SEGMENTS - 1) write();
        await Bun.sleep(300);
        expect(outcomes).toEqual([]);
        // One more: a run starts at once and takes them all.
        while (sealed() < BACKLOG_SEGMENTS) write();
        await waitFor(() => outcomes.length > 0, "a compaction run", 30_000);
        expect(outcomes).toEqual([true]);
        const [row] = await query(`SELECT count(*)::INT AS n FROM read_parquet('${join(dir, "logs")}/**/*.parquet')`);
        expect(row!.n).toBeGreaterThan(0);
        expect(Spool.segments(spool.dir).length).toBe(1);
      } finally {
        await compactor.stop();
        spool.close();
      }
    });
  });

  it("starts no backlog run while a segment keeps failing: such a segment is given up on after three intervals, not three seals", async () => {
    const { Compactor, BACKLOG_SEGMENTS } = await import("../app/log/compactor.ts");
    const { waitFor } = await import("./support/server.ts");
    const { mkdirSync, rmSync, writeFileSync } = await import("node:fs");
    await inTempDir(async (dir) => {
      let onSeal = () => {};
      const spool = Spool.open(join(dir, "spool"), { segmentBytes: 2048, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger, onSeal: () => onSeal() });
      const outcomes: boolean[] = [];
      const compactor = new Compactor({ spool, logsDir: join(dir, "logs"), intervalSeconds: () => 3600, retention: () => ({ days: 0, bytes: 0 }), logger: silentLogger, onOutcome: (o) => outcomes.push(o.ok) });
      const running = () => (compactor as unknown as { running: Promise<unknown> | null }).running;
      onSeal = () => compactor.sealed();
      // A file where the stream's partition folder goes: every segment of it fails, run after run.
      mkdirSync(join(dir, "logs"), { recursive: true });
      writeFileSync(join(dir, "logs", "stream=spin30"), "in the way");
      compactor.start();
      try {
        const sealed = () => Spool.segments(spool.dir).length - 1;
        let seq = 0;
        const sealOne = async () => {
          const before = sealed();
          while (sealed() === before) {
            spool.append(msg("spin30", ++seq, `{"v":${seq},"pad":"${"x".repeat(40)}"}`));
            spool.flush();
          }
          // Compactor.sealed looks on the next turn.
          await new Promise((r) => setImmediate(r));
          await new Promise((r) => setImmediate(r));
        };
        while (sealed() < BACKLOG_SEGMENTS) await sealOne();
        await waitFor(() => outcomes.length === 1 && running() === null, "the first run", 30_000);
        expect(outcomes).toEqual([false]);
        // Seal after seal, the failing segments start no run (before: one per seal, quarantining them all by the third).
        for (let i = 0; i < 4; i++) {
          await sealOne();
          expect(running()).toBeNull();
        }
        expect(outcomes).toEqual([false]);
        expect(sealed()).toBe(BACKLOG_SEGMENTS + 4);
        // The obstacle gone, a run (the interval's) compacts them all, and the backlog trigger works again.
        rmSync(join(dir, "logs", "stream=spin30"));
        const o = await compactor.runOnce();
        expect(o.ok && o.result.problems).toEqual([]);
        expect(o.ok && o.result.segments).toBe(BACKLOG_SEGMENTS + 4);
        const [row] = await query(`SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM read_parquet('${join(dir, "logs")}/**/*.parquet')`);
        expect(row!.n).toBe(row!.d as number);
        expect(row!.n).toBeGreaterThan(BACKLOG_SEGMENTS + 4);
        while (sealed() < BACKLOG_SEGMENTS) await sealOne();
        await waitFor(() => outcomes.length === 3, "a backlog run after the failures cleared", 30_000);
        expect(outcomes.at(-1)).toBe(true);
      } finally {
        await compactor.stop();
        spool.close();
      }
    });
  });

  it("never gives up on a segment that failed for want of disk, permission or memory: it stays in the spool, reported at each run", async () => {
    const { Compactor, boxFailure } = await import("../app/log/compactor.ts");
    const { writeFileSync } = await import("node:fs");
    // The error texts as Node and DuckDB give them: a real ENOSPC (from /dev/full) and others.
    let enospc = "";
    try {
      writeFileSync("/dev/full", "x");
    } catch (err) {
      enospc = (err as Error).message;
    }
    expect(enospc).toContain("ENOSPC");
    const box = [enospc, "EROFS: read-only file system, mkdir '/data/logs/.tmp-1'", "EACCES: permission denied, open", "Out of Memory Error: failed to allocate data of size 128.0 MiB (2.0 MiB/122.0 MiB used)", "EMFILE: too many open files"];
    expect(box.map(boxFailure)).toEqual(box.map(() => true));
    const own = ["Conversion Error: Could not convert string 'x' to INT64", "ENOTDIR: not a directory, mkdir '/data/logs/stream=spin30'"];
    expect(own.map(boxFailure)).toEqual(own.map(() => false));
    await inTempDir(async (dir) => {
      const spool = Spool.open(join(dir, "spool"), { segmentBytes: 2048, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
      for (let i = 1; Spool.segments(spool.dir).length < 2; i++) spool.append(msg("spin30", i, `{"v":${i},"pad":"${"x".repeat(40)}"}`));
      const segment = join(spool.dir, Spool.segments(spool.dir)[0]!);
      const logged: string[] = [];
      const logger = { ...silentLogger, error: (m: string) => void logged.push(m) };
      for (const error of [enospc, own[0]!]) {
        const givenUp: string[][] = [];
        const compactor = new Compactor({
          spool, logsDir: join(dir, "logs"), intervalSeconds: () => 3600, retention: () => ({ days: 0, bytes: 0 }), logger, onOutcome: () => {},
          // The run as compaction would answer it: this segment failed with `error`.
          inQueryProcess: (job) => {
            givenUp.push(job.giveUp);
            return Promise.resolve({ ok: true, result: { segments: 0, rows: 0, files: [], recovered: 0, readFromFile: 0, problems: [{ segment, error }] } });
          },
        });
        for (let run = 0; run < 5; run++) await compactor.runOnce();
        expect({ error: error.slice(0, 6), givenUp }).toEqual({ error: error.slice(0, 6), givenUp: error === enospc ? [[], [], [], [], []] : [[], [], [], [segment], [segment]] });
        await compactor.stop();
      }
      expect(logged.filter((l) => l.includes("for want of disk")).length).toBe(5);
      spool.close();
    });
  });

  it("starts no backlog run with compaction off (log_compact_seconds 0) nor once stopped", async () => {
    const { Compactor, BACKLOG_SEGMENTS } = await import("../app/log/compactor.ts");
    await inTempDir(async (dir) => {
      let onSeal = () => {};
      const spool = Spool.open(join(dir, "spool"), { segmentBytes: 2048, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger, onSeal: () => onSeal() });
      let interval = 0;
      const outcomes: boolean[] = [];
      const compactor = new Compactor({ spool, logsDir: join(dir, "logs"), intervalSeconds: () => interval, retention: () => ({ days: 0, bytes: 0 }), logger: silentLogger, onOutcome: (o) => outcomes.push(o.ok) });
      const running = () => (compactor as unknown as { running: Promise<unknown> | null }).running;
      let seals = 0;
      onSeal = () => { seals++; compactor.sealed(); };
      compactor.start();
      try {
        let seq = 0;
        const sealOne = async () => {
          const before = seals;
          while (seals === before) {
            spool.append(msg("spin30", ++seq, `{"v":${seq},"pad":"${"x".repeat(40)}"}`));
            spool.flush();
          }
          await new Promise((r) => setImmediate(r));
          await new Promise((r) => setImmediate(r));
        };
        for (let i = 0; i < BACKLOG_SEGMENTS + 3; i++) {
          await sealOne();
          expect(running()).toBeNull();
        }
        // Turned on, then stopped (the server stopping): still no run, however many seals.
        interval = 3600;
        await compactor.stop();
        for (let i = 0; i < 3; i++) {
          await sealOne();
          expect(running()).toBeNull();
        }
        expect(outcomes).toEqual([]);
        expect(Spool.segments(spool.dir).length).toBe(BACKLOG_SEGMENTS + 7);
      } finally {
        await compactor.stop();
        spool.close();
      }
    });
  });

  it("a seal whose backlog check cannot list the spool (a moment without file descriptors) does not bring the hub down", async () => {
    const { Compactor } = await import("../app/log/compactor.ts");
    const { renameSync } = await import("node:fs");
    await inTempDir(async (dir) => {
      let onSeal = () => {};
      const spoolDir = join(dir, "spool");
      const spool = Spool.open(spoolDir, { segmentBytes: 2048, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger, onSeal: () => onSeal() });
      const compactor = new Compactor({ spool, logsDir: join(dir, "logs"), intervalSeconds: () => 3600, retention: () => ({ days: 0, bytes: 0 }), logger: silentLogger, onOutcome: () => {} });
      const uncaught: unknown[] = [];
      const onUncaught = (err: unknown) => uncaught.push(err);
      process.on("uncaughtException", onUncaught);
      let seals = 0;
      onSeal = () => { seals++; compactor.sealed(); };
      compactor.start();
      try {
        let seq = 0;
        while (seals === 0) spool.append(msg("spin30", ++seq, `{"v":${seq},"pad":"${"x".repeat(40)}"}`));
        // The folder cannot be listed when Compactor.sealed looks (next turn): readdir fails.
        renameSync(spoolDir, join(dir, "away"));
        await new Promise((r) => setImmediate(r));
        await new Promise((r) => setImmediate(r));
        renameSync(join(dir, "away"), spoolDir);
        expect(uncaught).toEqual([]);
      } finally {
        process.off("uncaughtException", onUncaught);
        await compactor.stop();
        spool.close();
      }
    });
  });

  it("alerts when compaction fails and again when it works", async () => {
    const { offsetClock, startTestServer, waitFor } = await import("./support/server.ts");
    const { startFakeSlack } = await import("./support/fake-slack.ts");
    const { writeFileSync, rmSync } = await import("node:fs");
    const slack = startFakeSlack();
    const tmp = tempDir();
    const clock = offsetClock();
    // A file where the logs folder should be: every run fails until it is gone.
    writeFileSync(join(tmp.dir, "logs"), "not a folder");
    const srv = await startTestServer({ log_segment_seconds: 1, log_compact_seconds: 1, alert_cooldown_seconds: 0 }, { dataDir: tmp.dir, slackWebhookUrl: slack.url("ok"), clock });
    try {
      await fetch(`${srv.url}/api/streams/s/messages`, { method: "POST", body: "a" });
      clock.advance(1100);
      await fetch(`${srv.url}/api/streams/s/messages`, { method: "POST", body: "b" });
      const texts = () => slack.received.map((m) => m.text.split("\n")[0]);
      await waitFor(() => texts().includes("Log compaction is failing"), "the failure alert", 15_000);
      rmSync(join(tmp.dir, "logs"));
      await waitFor(() => texts().includes("Resolved: Log compaction works again"), "the recovery", 15_000);
    } finally {
      await srv.close();
      slack.stop();
      tmp.remove();
    }
  });
});

describe("an independent Parquet reader", () => {
  it("reads compacted files with hyparquet (no DuckDB): the same rows, zstd and all", async () => {
    const { parquetReadObjects } = await import("hyparquet");
    const { asyncBufferFromFile } = await import("hyparquet/src/node.js");
    const { compressors } = await import("hyparquet-compressors");
    await inTempDir(async (dir) => {
      const spoolDir = join(dir, "spool");
      const logsDir = join(dir, "logs");
      const r = await compactSegments(spoolWith(spoolDir, 40), logsDir);
      const rows: Record<string, unknown>[] = [];
      for (const f of r.files) {
        const file = await asyncBufferFromFile(join(logsDir, f));
        const stream = decodeURIComponent(/stream=([^/]+)/.exec(f)![1]!);
        for (const row of await parquetReadObjects({ file, compressors })) rows.push({ ...row, stream });
      }
      expect(rows).toHaveLength(40);
      const seven = rows.find((x) => Number(x.seq) === 7)!;
      expect(seven).toMatchObject({ stream: "lab/rig-1", kind: "text", data: '{"v":7}', origin: "test" });
      // hyparquet hands TIMESTAMP columns back as Dates (millisecond precision).
      expect(seven.ts).toBeInstanceOf(Date);
      expect((seven.ts as Date).toISOString()).toBe("2026-11-23T12:00:00.000Z");
    });
  });
});

describe("retention of the Parquet log", () => {
  it("removes date partitions past the age limit, then the oldest dates while over the size limit", async () => {
    const { enforceParquetRetention } = await import("../app/log/retention.ts");
    const { mkdirSync, writeFileSync, existsSync } = await import("node:fs");
    await inTempDir(async (dir) => {
      const part = (stream: string, date: string, bytes: number) => {
        const partition = join(dir, `stream=${stream}`, `date=${date}`);
        mkdirSync(partition, { recursive: true });
        writeFileSync(join(partition, "seg1_0.parquet"), new Uint8Array(bytes));
        return partition;
      };
      const a1 = part("a", "2026-10-01", 100);
      const b1 = part("b", "2026-11-20", 100);
      const a2 = part("a", "2026-11-21", 100);
      const b2 = part("b", "2026-11-22", 100);
      const now = Date.parse("2026-11-23T12:00:00Z");
      expect(enforceParquetRetention(dir, { days: 0, bytes: 0 }, now)).toEqual([]);
      const byAge = enforceParquetRetention(dir, { days: 30, bytes: 0 }, now);
      expect(byAge).toEqual([{ path: a1, bytes: 100, reason: "older than 30 days" }]);
      const bySize = enforceParquetRetention(dir, { days: 30, bytes: 150 }, now);
      expect(bySize.map((r) => r.path)).toEqual([b1, a2]);
      expect([existsSync(a1), existsSync(b1), existsSync(a2), existsSync(b2)]).toEqual([false, false, false, true]);
    });
  });
});

describe("merging the small files of closed partitions", () => {
  const MERGE_CRASH = join(import.meta.dir, "support", "merge-crash.ts");
  const files = async (dir: string) => {
    const { readdirSync, statSync } = await import("node:fs");
    const out: string[] = [];
    const walk = (d: string) => { for (const e of readdirSync(d)) { const p = join(d, e); if (statSync(p).isDirectory()) walk(p); else out.push(p); } };
    walk(dir);
    return out;
  };

  it("leaves one file per closed partition with the same rows, and leaves today's alone", async () => {
    const { mergeClosedPartitions } = await import("../app/log/merge.ts");
    await inTempDir(async (dir) => {
      const logsDir = join(dir, "logs");
      await compactSegments(spoolWith(join(dir, "spool"), 100), logsDir);
      const before = (await files(logsDir)).filter((f) => f.endsWith(".parquet"));
      expect(before.length).toBeGreaterThan(2);
      expect(await mergeClosedPartitions(logsDir, "2026-11-23")).toEqual([]);
      const merged = await mergeClosedPartitions(logsDir, "2026-11-24");
      expect(merged).toHaveLength(2);
      const after = (await files(logsDir)).filter((f) => f.endsWith(".parquet"));
      expect(after).toHaveLength(2);
      const rows = await query(`SELECT seq::INT AS seq FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) ORDER BY seq`);
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    });
  });

  it("merges today's partition once it holds 16 files of compaction runs, leaving earlier merged files as they are", async () => {
    const { mergeClosedPartitions, OPEN_PARTITION_MERGE_AT } = await import("../app/log/merge.ts");
    const tmp = tempDir();
    const logsDir = join(tmp.dir, "logs");
    try {
      await compactSegments(spoolWith(join(tmp.dir, "spool"), 800), logsDir);
      const parquet = async () => (await files(logsDir)).filter((f) => f.endsWith(".parquet"));
      const perPartition = (list: string[]) => Object.values(Object.groupBy(list, (f) => f.split("/").slice(0, -1).join("/"))).map((l) => l!.length);
      expect(Math.min(...perPartition(await parquet()))).toBeGreaterThanOrEqual(OPEN_PARTITION_MERGE_AT);
      // "today" is the messages' own date: the partitions are still open.
      expect(await mergeClosedPartitions(logsDir, "2026-11-23")).toHaveLength(2);
      const once = await parquet();
      expect(once.map((f) => f.split("/").pop()!.replace(/\d+/g, "N"))).toEqual(["merged_N.parquet", "merged_N.parquet"]);
      // Fewer than 16 new run files: nothing to do; a merged file is never merged again while the day is open.
      expect(await mergeClosedPartitions(logsDir, "2026-11-23")).toEqual([]);
      expect(await parquet()).toEqual(once);
      const rows = await query(`SELECT seq::INT AS seq, count(*)::INT AS n FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) GROUP BY 1 ORDER BY 1`);
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 800 }, (_, i) => i + 1));
      expect(rows.every((r) => r.n === 1)).toBe(true);
    } finally {
      tmp.remove();
    }
  });

  it.each(["written", "manifest", "renamed", "inputs-removed"])("loses and duplicates nothing when killed after %s", async (step) => {
    const { mergeClosedPartitions } = await import("../app/log/merge.ts");
    const tmp = tempDir();
    try {
      const logsDir = join(tmp.dir, "logs");
      await compactSegments(spoolWith(join(tmp.dir, "spool"), 60), logsDir);
      const p = Bun.spawn([process.execPath, MERGE_CRASH, JSON.stringify({ logsDir, today: "2026-11-24", crashAt: step })], { stdout: "pipe", stderr: "pipe" });
      await p.exited;
      expect(p.signalCode).toBe("SIGKILL");
      await mergeClosedPartitions(logsDir, "2026-11-24");
      const rows = await query(`SELECT seq::INT AS seq, count(*)::INT AS n FROM read_parquet('${logsDir}/**/*.parquet', hive_partitioning = true) GROUP BY 1 ORDER BY 1`);
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect(rows.every((r) => r.n === 1)).toBe(true);
      expect((await files(logsDir)).filter((f) => f.endsWith(".parquet"))).toHaveLength(2);
      expect((await files(logsDir)).some((f) => f.endsWith(".merge") || f.endsWith(".tmp"))).toBe(false);
    } finally {
      tmp.remove();
    }
  });
});
