import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { DuckDBInstance, type DuckDBAppender } from "@duckdb/node-api";
import type { Message } from "../app/core/message.ts";
import { decodeRecord, encodeRecord, locateRecord, type RecordFields } from "../app/log/record.ts";
import { join } from "node:path";
import { tempDir } from "./support/server.ts";
import { decodedRows, EDGE_STRINGS, rawRecord } from "./support/edge-records.ts";
import { LOG_ROW_COLUMNS, LogRowChunks } from "../app/log/rows.ts";

setDefaultTimeout(60_000);

/** The reference: one message as a row of LOG_ROW_COLUMNS through DuckDB's row appender (how the tail was loaded before LogRowChunks). */
function appendLogRow(appender: DuckDBAppender, m: Message): void {
  appender.appendBigInt(BigInt(Math.round(m.ts)));
  appender.appendVarchar(m.stream);
  appender.appendBigInt(BigInt(m.seq));
  appender.appendVarchar(m.origin);
  appender.appendVarchar(typeof m.data === "string" ? "text" : "binary");
  appender.appendVarchar(typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64"));
  appender.endRow();
}

/** A text record whose payload bytes are `raw` as they are (not valid UTF-8, say), with a valid CRC. */
function rawTextRecord(stream: string, seq: number, raw: Uint8Array): Buffer {
  const rec = encodeRecord({ stream, ts: 1_795_392_000_000_000 + seq, seq, origin: "t", data: "x".repeat(raw.length), size: raw.length });
  rec.set(raw, rec.length - raw.length);
  rec.writeUInt32LE(Bun.hash.crc32(rec.subarray(8)), 4);
  return rec;
}

describe("the columnar load of spool records (LogRowChunks)", () => {
  it("gives DuckDB exactly the rows the row appender gives, over several chunks, for every kind of field", async () => {
    const messages: Message[] = [];
    for (let i = 1; i <= 5000; i++) {
      const stream = i % 7 === 0 ? `a-stream-name-longer-than-twelve-${i % 5}` : i % 11 === 0 ? "ströme/ü" : i % 3 === 0 ? "" : "spin7";
      const origin = i % 4 === 0 ? "ws:127.0.0.1:51234" : i % 9 === 0 ? "é" : `udp:10.0.0.${i % 300}:5000`;
      const data = i % 13 === 0 ? new Uint8Array([0, 1, 255, i % 256]) : i % 17 === 0 ? "é😀 short" : i % 19 === 0 ? "" : `{"i":${i},"pad":"${"p".repeat(i % 90)}"}`;
      messages.push({ stream, ts: 1_795_392_000_000_000 + i * 1000 + (i % 2 ? 0.4 : 0), seq: i, origin, data, size: 0 });
    }
    const buf = Buffer.concat([
      ...messages.map((m) => encodeRecord(m)),
      rawTextRecord("spin7", 5001, new Uint8Array([0x61, 0xff, 0xfe, 0x62])), // not UTF-8: replacement characters, as decodeRecord gives
      rawTextRecord("spin7", 5002, new Uint8Array([0xc3])),
    ]);
    const db = await DuckDBInstance.create(":memory:", { threads: "1" });
    const c = await db.connect();
    try {
      await c.run(`CREATE TABLE by_row (${LOG_ROW_COLUMNS}); CREATE TABLE by_chunk (${LOG_ROW_COLUMNS})`);
      const rowApp = await c.createAppender("by_row");
      const chunkApp = await c.createAppender("by_chunk");
      const chunks = new LogRowChunks(chunkApp);
      const f: RecordFields = { kind: 0, ts: 0, seq: 0, streamStart: 0, streamEnd: 0, originStart: 0, originEnd: 0, dataStart: 0, next: 0 };
      let o = 0;
      let n = 0;
      while (o < buf.length) {
        const d = decodeRecord(buf, o);
        if (!d.ok || !("message" in d)) throw new Error(`record at ${o} unreadable`);
        appendLogRow(rowApp, d.message);
        expect(locateRecord(buf, o, f)).toBe("message");
        expect(f.next).toBe(d.next);
        chunks.addRecord(buf, f);
        o = f.next;
        n++;
      }
      chunks.flush();
      rowApp.closeSync();
      chunkApp.closeSync();
      const count = async (sql: string) => Number((await c.runAndReadAll(sql)).getRows()[0]![0]);
      expect(n).toBe(5002);
      expect(await count("SELECT count(*) FROM by_chunk")).toBe(5002);
      expect(await count("SELECT count(*) FROM (SELECT * FROM by_row EXCEPT ALL SELECT * FROM by_chunk)")).toBe(0);
      expect(await count("SELECT count(*) FROM (SELECT * FROM by_chunk EXCEPT ALL SELECT * FROM by_row)")).toBe(0);
      expect(await count("SELECT count(*) FROM by_chunk WHERE stream IS NULL OR origin IS NULL OR data IS NULL OR kind IS NULL")).toBe(0);
      // Inline (short) strings compare equal to the same string stored by DuckDB itself.
      expect(await count("SELECT count(*) FROM by_chunk WHERE stream = 'spin7' AND kind = 'text'")).toBe(await count("SELECT count(*) FROM by_row WHERE stream = 'spin7' AND kind = 'text'"));
      expect(await count("SELECT count(*) FROM by_chunk WHERE data = 'a' || chr(65533) || chr(65533) || 'b'")).toBe(1);
      expect(await count("SELECT count(*) FROM by_chunk WHERE kind = 'binary'")).toBe(messages.filter((m) => typeof m.data !== "string").length);
      expect(await count("SELECT count(*) FROM by_chunk WHERE seq = 13 AND kind = 'binary' AND data = 'AAH/DQ=='")).toBe(1); // [0, 1, 255, 13]
    } finally {
      c.closeSync();
      db.closeSync();
    }
  });

  it("refuses what decodeRecord refuses, for the same reason", () => {
    const good = encodeRecord({ stream: "s", ts: 1, seq: 1, origin: "o", data: "d", size: 1 });
    const f: RecordFields = { kind: 0, ts: 0, seq: 0, streamStart: 0, streamEnd: 0, originStart: 0, originEnd: 0, dataStart: 0, next: 0 };
    const badCrc = Buffer.from(good);
    badCrc[badCrc.length - 1] = badCrc[badCrc.length - 1]! ^ 1;
    const zeroSeq = encodeRecord({ stream: "s", ts: 1, seq: 1, origin: "o", data: "d", size: 1 });
    zeroSeq.writeDoubleLE(0, 8 + 1 + 8);
    zeroSeq.writeUInt32LE(Bun.hash.crc32(zeroSeq.subarray(8)), 4);
    for (const [bytes, reason] of [[good.subarray(0, good.length - 1), "incomplete"], [badCrc, "bad_crc"], [zeroSeq, "bad_body"], [Buffer.alloc(30), "bad_length"]] as const) {
      const d = decodeRecord(bytes, 0);
      expect(d.ok ? "ok" : d.reason).toBe(reason);
      expect(locateRecord(bytes, 0, f)).toBe(reason);
    }
  });
});

describe("the strings LogRowChunks hands DuckDB", () => {
  it("are the strings decodeRecord reads, at the inline edge (12/13 bytes), with the prefix cutting a character, NUL bytes, empty and not UTF-8, and DuckDB compares, sorts and writes them as its own", async () => {
    const n = EDGE_STRINGS.length;
    const records: Buffer[] = [];
    // Every string in every column, over more than one chunk (2,048 rows), text and binary.
    for (let rep = 0, seq = 1; rep < 80; rep++) {
      for (let i = 0; i < n; i++, seq++) {
        // Times before 1970, fractional, and past 2^53 (not a safe integer: written through a BigInt).
        const ts = seq % 97 === 0 ? -123_456.6 : seq % 89 === 0 ? 2 ** 53 + 2 * seq : seq % 83 === 0 ? 1_795_392_000_000_000.5 : 1_795_392_000_000_000 + seq;
        records.push(rawRecord(seq, EDGE_STRINGS[i]!, EDGE_STRINGS[(i + rep) % n]!, EDGE_STRINGS[(i + 2 * rep + 1) % n]!, rep % 5 === 4 ? 2 : 1, ts));
      }
    }
    const buf = Buffer.concat(records);
    const expected = decodedRows(buf).map((r) => ({ ...r, ts: String(BigInt(Math.round(r.ts))) }));
    expect(expected.length).toBeGreaterThan(2048);
    expect(expected.filter((r) => r.ts.startsWith("-")).length).toBeGreaterThan(0);
    const db = await DuckDBInstance.create(":memory:", { threads: "1" });
    const c = await db.connect();
    const tmp = tempDir();
    try {
      await c.run(`CREATE TABLE by_chunk (${LOG_ROW_COLUMNS})`);
      const app = await c.createAppender("by_chunk");
      const chunks = new LogRowChunks(app);
      const f: RecordFields = { kind: 0, ts: 0, seq: 0, streamStart: 0, streamEnd: 0, originStart: 0, originEnd: 0, dataStart: 0, next: 0 };
      for (let o = 0; o < buf.length; o = f.next) {
        expect(locateRecord(buf, o, f)).toBe("message");
        chunks.addRecord(buf, f);
      }
      chunks.flush();
      app.closeSync();
      const got = (await c.runAndReadAll("SELECT seq::INT AS seq, ts_us::VARCHAR AS ts, stream, origin, kind, data FROM by_chunk ORDER BY seq")).getRowObjectsJson();
      expect(got).toEqual(expected);
      // The same strings made by DuckDB itself (from their bytes): equal to them, grouped, sorted and joined alike.
      const hex = (s: string) => `decode(unhex('${Buffer.from(s).toString("hex")}'))`;
      await c.run(`CREATE TABLE ref (${LOG_ROW_COLUMNS})`);
      for (let i = 0; i < expected.length; i += 500) {
        await c.run(`INSERT INTO ref VALUES ${expected.slice(i, i + 500).map((r) => `(${r.ts}, ${hex(r.stream)}, ${r.seq}, ${hex(r.origin)}, '${r.kind}', ${hex(r.data)})`).join(", ")}`);
      }
      const one = async (sql: string) => (await c.runAndReadAll(sql)).getRows()[0]![0];
      expect(Number(await one("SELECT count(*) FROM by_chunk c JOIN ref r USING (seq) WHERE c.stream = r.stream AND c.origin = r.origin AND c.kind = r.kind AND c.data = r.data AND c.ts_us = r.ts_us"))).toBe(expected.length);
      expect(Number(await one("SELECT count(*) FROM by_chunk c JOIN ref r ON c.stream = r.stream AND c.origin = r.origin AND c.data = r.data"))).toBe(Number(await one("SELECT count(*) FROM ref a JOIN ref b ON a.stream = b.stream AND a.origin = b.origin AND a.data = b.data")));
      for (const col of ["stream", "origin", "data"]) {
        const order = (t: string) => one(`SELECT string_agg(seq::VARCHAR, ',' ORDER BY ${col}, seq) FROM ${t}`);
        expect(await order("by_chunk")).toBe(await order("ref"));
        const groups = (t: string) => one(`SELECT string_agg(k, ',' ORDER BY k) FROM (SELECT hex(encode(${col})) || ':' || count(*) AS k FROM ${t} GROUP BY ${col})`);
        expect(await groups("by_chunk")).toBe(await groups("ref"));
        // Compared with a literal, as a WHERE clause does (the prefix first, then the whole).
        for (const s of ["abcdefghijkl", "abcdefghijklm", "aéééééé", "ab😀😀😀", "\0".repeat(13)]) {
          const count = (t: string) => one(`SELECT count(*) FROM ${t} WHERE ${col} = ${hex(s)}`);
          expect(Number(await count("by_chunk"))).toBe(Number(await count("ref")));
        }
      }
      expect(Number(await one("SELECT count(*) FROM by_chunk WHERE stream IS NULL OR origin IS NULL OR data IS NULL OR kind IS NULL"))).toBe(0);
      // Parquet's reader checks every string is UTF-8: what was written reads back, row for row.
      const file = join(tmp.dir, "rows.parquet");
      await c.run(`COPY by_chunk TO '${file}' (FORMAT parquet)`);
      expect(Number(await one(`SELECT count(*) FROM read_parquet('${file}') p JOIN ref r USING (seq) WHERE p.stream = r.stream AND p.origin = r.origin AND p.kind = r.kind AND p.data = r.data`))).toBe(expected.length);
    } finally {
      c.closeSync();
      db.closeSync();
      tmp.remove();
    }
  });

  it("keeps the buffers its strings point into (its own: decoded, base64) alive until the flush, through collections and allocation", async () => {
    const db = await DuckDBInstance.create(":memory:", { threads: "1" });
    const c = await db.connect();
    try {
      await c.run(`CREATE TABLE t (${LOG_ROW_COLUMNS})`);
      const app = await c.createAppender("t");
      const chunks = new LogRowChunks(app);
      const messages: Message[] = [];
      let garbage: Buffer[] = [];
      // Under a chunk, so nothing is appended before the flush: every string (13–900 bytes, each its own
      // small buffer) is pointed at, not copied, while collections run and buffers of the same sizes come and go.
      for (let i = 1; i <= 2000; i++) {
        const len = 13 + ((i * 37) % 890);
        const text = `${i}:${"abcdefgh".repeat(120)}`.slice(0, len);
        const m: Message = { stream: `stream-${i}-${"s".repeat(i % 20)}`, ts: 1_795_392_000_000_000 + i, seq: i, origin: `origin-${i}-longer`, data: i % 3 ? text : Buffer.from(text), size: len };
        messages.push(m);
        chunks.addMessage(m);
        for (let k = 0; k < 8; k++) garbage.push(Buffer.alloc(len, 0x5a), Buffer.from("Q".repeat(len)));
        if (i % 250 === 0) {
          garbage = [];
          Bun.gc(true);
        }
      }
      chunks.flush();
      app.closeSync();
      const got = (await c.runAndReadAll("SELECT seq::INT AS seq, stream, origin, kind, data FROM t ORDER BY seq")).getRowObjectsJson();
      expect(got).toEqual(messages.map((m) => ({ seq: m.seq, stream: m.stream, origin: m.origin, kind: typeof m.data === "string" ? "text" : "binary", data: typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64") })));
    } finally {
      c.closeSync();
      db.closeSync();
    }
  });
});
