import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { DuckDBInstance, type DuckDBAppender } from "@duckdb/node-api";
import type { Message } from "../app/core/message.ts";
import { decodeRecord, encodeRecord, locateRecord, type RecordFields } from "../app/log/record.ts";
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
