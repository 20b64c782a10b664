import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { appendFileSync, closeSync, mkdirSync, unlinkSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLogger, silentLogger } from "../app/core/logger.ts";
import type { Message } from "../app/core/message.ts";
import { decodeRecord, encodeRecord } from "../app/log/record.ts";
import { Spool } from "../app/log/spool.ts";
import { spawnServe } from "./support/cli.ts";
import { connect } from "./support/client.ts";
import { inTempDir, waitFor } from "./support/server.ts";

// Real files and subprocesses killed with SIGKILL: more than Bun's 5 s default.
setDefaultTimeout(60_000);

const msg = (stream: string, seq: number, data: string | Uint8Array, origin = "test"): Message =>
  ({ stream, ts: 1_800_000_000_000_000 + seq, seq, origin, data, size: typeof data === "string" ? Buffer.byteLength(data) : data.byteLength });
const OPTS = { segmentBytes: 64 * 1024 * 1024, segmentSeconds: 3600, fsyncMs: 50, logger: silentLogger };

/** Every message in a spool folder, oldest first. */
function readAll(dir: string): Message[] {
  return Spool.segments(dir).flatMap((f) => [...Spool.read(join(dir, f))]);
}

describe("spool records", () => {
  it("round-trips text and binary with their stream, origin, ts and seq", () => {
    for (const m of [msg("lab/ü-1", 7, "héllo"), msg("s", 8, new Uint8Array([0, 255, 3]), "udp:10.0.0.1:5"), msg("s", 9, "")]) {
      const r = decodeRecord(encodeRecord(m), 0);
      expect(r.ok && "message" in r).toBe(true);
      if (r.ok && "message" in r) expect(r.message).toEqual(typeof m.data === "string" ? m : { ...m, data: new Uint8Array(m.data as Uint8Array) });
    }
  });

  it("tells a corrupt or cut record from data", () => {
    const rec = encodeRecord(msg("s", 1, "payload"));
    const flipped = Buffer.from(rec);
    flipped[flipped.length - 2] = flipped[flipped.length - 2]! ^ 0xff;
    expect(decodeRecord(flipped, 0)).toEqual({ ok: false, reason: "bad_crc" });
    expect(decodeRecord(rec.subarray(0, rec.length - 1), 0)).toEqual({ ok: false, reason: "incomplete" });
    const huge = Buffer.from(rec);
    huge.writeUInt32LE(0xffffffff, 0);
    expect(decodeRecord(huge, 0)).toEqual({ ok: false, reason: "bad_length" });
  });
});

describe("the spool", () => {
  it("writes a turn's appends in one write, keeps them in order, and reads them back", async () => {
    await inTempDir(async (dir) => {
      const spool = Spool.open(dir, OPTS);
      for (let i = 1; i <= 1000; i++) spool.append(msg("s", i, `m${i}`));
      await spool.durable();
      expect(spool.stats.writes).toBe(1);
      expect(spool.stats.fsyncs).toBeGreaterThanOrEqual(1);
      spool.close();
      expect(readAll(dir).map((m) => m.data)).toEqual(Array.from({ length: 1000 }, (_, i) => `m${i + 1}`));
    });
  });

  it("rolls segments by size and remembers each stream's last seq", async () => {
    await inTempDir(async (dir) => {
      const spool = Spool.open(dir, { ...OPTS, segmentBytes: 10_000 });
      for (let i = 1; i <= 300; i++) {
        spool.append(msg(i % 2 ? "odd" : "even", i, "x".repeat(100)));
        if (i % 50 === 0) spool.flush();
      }
      spool.close();
      expect(Spool.segments(dir).length).toBeGreaterThan(2);
      const again = Spool.open(dir, OPTS);
      expect(again.recovery).toMatchObject({ records: 300, truncated: [] });
      expect(again.lastSeq.get("odd")).toBe(299);
      expect(again.lastSeq.get("even")).toBe(300);
      again.close();
    });
  });

  it("never reuses a segment number and keeps each stream's seq when the segments are gone (compacted or removed by retention)", async () => {
    await inTempDir(async (dir) => {
      const used: string[] = [];
      for (let round = 0; round < 3; round++) {
        const spool = Spool.open(dir, { ...OPTS, segmentBytes: 2_000 });
        const base = (spool.lastSeq.get("s") ?? 0);
        expect(base).toBe(round * 40);
        for (let i = 1; i <= 40; i++) {
          spool.append(msg("s", base + i, "x".repeat(100)));
          if (i % 10 === 0) spool.flush();
        }
        spool.close();
        // What compaction does: every segment goes once it is in Parquet.
        for (const f of Spool.segments(dir)) {
          used.push(f);
          unlinkSync(join(dir, f));
        }
      }
      expect(new Set(used).size).toBe(used.length);
      // A kill -9 leaves the last segment in place: the numbers still go up from it.
      const crashed = Spool.open(dir, OPTS);
      crashed.append(msg("s", 121, "y"));
      crashed.flush();
      const current = crashed.current;
      crashed.close();
      expect(used.some((f) => current.endsWith(f))).toBe(false);
    });
  });

  it("cuts off a torn tail on recovery, reports it, and never reads it as data", async () => {
    await inTempDir(async (dir) => {
      const spool = Spool.open(dir, OPTS);
      for (let i = 1; i <= 10; i++) spool.append(msg("s", i, `m${i}`));
      spool.close();
      const file = join(dir, Spool.segments(dir)[0]!);
      const good = statSync(file).size;
      // A power cut mid-write: half of a record, then garbage.
      const half = encodeRecord(msg("s", 11, "never acknowledged"));
      appendFileSync(file, half.subarray(0, half.length - 5));
      const recovered = Spool.open(dir, OPTS);
      expect(recovered.recovery.truncated).toEqual([{ file: Spool.segments(dir)[0]!, offset: good, bytes: half.length - 5, reason: "incomplete" }]);
      expect(statSync(file).size).toBe(good);
      recovered.close();
      expect(readAll(dir).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // A corrupt last record (bit flip, not a write cut short): kept in place, reported, never read as data.
      const bytes = readFileSync(file);
      bytes[good - 3] = bytes[good - 3]! ^ 0x55;
      writeFileSync(file, bytes);
      const again = Spool.open(dir, OPTS);
      expect(again.recovery.truncated).toEqual([]);
      expect(again.recovery.damaged).toEqual([expect.objectContaining({ file: Spool.segments(dir)[0]!, reason: "bad_crc", records: 1 })]);
      again.close();
      expect(statSync(file).size).toBe(good);
      expect(readAll(dir).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    });
  });
});

describe("durability against kill -9", () => {

  it("keeps every HTTP-published message that got its 2xx, exactly once, and seq goes on after the restart", async () => {
    await inTempDir(async (dir) => {
      const a = await spawnServe(dir);
      const acked: string[] = [];
      let stop = false;
      const writers = [0, 1, 2].map(async (w) => {
        for (let i = 0; !stop; i++) {
          const body = `w${w}-${i}`;
          try {
            const r = await fetch(`http://127.0.0.1:${a.port}/api/streams/crash/messages`, { method: "POST", body, headers: { "content-type": "text/plain" } });
            if (r.status === 200) acked.push(body);
          } catch { return; }
        }
      });
      await waitFor(() => acked.length >= 300, "some acknowledged messages", 20_000);
      a.p.kill("SIGKILL");
      stop = true;
      await Promise.all(writers);
      await a.p.exited;
      const logged = readAll(join(dir, "spool")).filter((m) => m.stream === "crash").map((m) => m.data as string);
      for (const body of acked) expect(logged.filter((x) => x === body).length).toBe(1);
      expect(new Set(logged).size).toBe(logged.length);
      const maxSeq = Math.max(...readAll(join(dir, "spool")).filter((m) => m.stream === "crash").map((m) => m.seq));
      const b = await spawnServe(dir);
      const r = await (await fetch(`http://127.0.0.1:${b.port}/api/streams/crash/messages`, { method: "POST", body: "after" })).json();
      expect(r.seq).toBe(maxSeq + 1);
      b.p.kill("SIGTERM");
      await b.p.exited;
    });
  });

  it("has every websocket message a subscriber saw in the spool after kill -9", async () => {
    await inTempDir(async (dir) => {
      const a = await spawnServe(dir);
      const sub = await connect(`ws://127.0.0.1:${a.port}/ws/wscrash`);
      const pub = await connect(`ws://127.0.0.1:${a.port}/ws/wscrash`);
      for (let i = 0; i < 20_000; i++) {
        pub.ws.send(`k${i}`);
        if (i % 1000 === 999) await Bun.sleep(1);
      }
      await waitFor(() => sub.messages.length >= 5000, "the subscriber to see messages", 20_000);
      a.p.kill("SIGKILL");
      await a.p.exited;
      const seen = [...sub.messages];
      const logged = new Set(readAll(join(dir, "spool")).map((m) => m.data as string));
      const missing = seen.filter((m) => !logged.has(m as string));
      expect(missing).toEqual([]);
    });
  });
});

describe("spool retention", () => {
  it("removes sealed segments oldest first past the size or age limit, never the one being written", async () => {
    await inTempDir(async (dir) => {
      const limits = { days: 0, bytes: 0 };
      const spool = Spool.open(dir, { ...OPTS, segmentBytes: 2000, retention: () => limits });
      for (let i = 1; i <= 100; i++) {
        spool.append(msg("s", i, "x".repeat(100)));
        spool.flush();
      }
      const before = Spool.segments(dir);
      expect(before.length).toBeGreaterThan(4);
      limits.bytes = 5000;
      const removed = spool.enforceRetention();
      const after = Spool.segments(dir);
      expect(removed.length).toBeGreaterThan(0);
      expect(after).toEqual(before.slice(removed.length));
      expect(after).toContain(spool.current.split("/").pop()!);
      // Every sealed segment is "older than 1 day" a day and a minute from now; the current one stays.
      limits.bytes = 0;
      limits.days = 1;
      spool.enforceRetention(Date.now() + 86_460_000);
      expect(Spool.segments(dir)).toEqual([spool.current.split("/").pop()!]);
      spool.close();
    });
  });
});

describe("a damaged segment", () => {
  /** A closed spool of one segment holding `n` messages of stream s (seq 1..n); returns the segment file and each record's offset. */
  function writeSegment(dir: string, n: number): { file: string; offsets: number[] } {
    const spool = Spool.open(dir, OPTS);
    for (let i = 1; i <= n; i++) spool.append(msg("s", i, `payload-${i}-${"x".repeat(40)}`));
    const file = spool.current;
    spool.close();
    const offsets: number[] = [];
    const buf = readFileSync(file);
    let o = buf.readUInt32LE(0) + 8; // past the marks record
    while (o < buf.length) { offsets.push(o); o += buf.readUInt32LE(o) + 8; }
    return { file, offsets };
  }

  it("keeps every intact record before and after 8 flipped bytes mid-file, reports the loss exactly, and leaves the file whole", async () => {
    await inTempDir(async (dir) => {
      const { file, offsets } = writeSegment(dir, 400);
      const size = statSync(file).size;
      const bytes = readFileSync(file);
      // 8 bytes inside record 100's payload: its length still leads to record 101.
      for (let i = 0; i < 8; i++) bytes[offsets[99]! + 40 + i] = bytes[offsets[99]! + 40 + i]! ^ 0xff;
      writeFileSync(file, bytes);
      const damage: { offset: number; bytes: number; reason: string }[] = [];
      const read = [...Spool.read(file, damage)].map((m) => m.seq);
      expect(read).toEqual(Array.from({ length: 400 }, (_, i) => i + 1).filter((s) => s !== 100));
      expect(damage).toEqual([{ offset: offsets[99]!, bytes: offsets[100]! - offsets[99]!, reason: "bad_crc" }]);
      const spool = Spool.open(dir, OPTS);
      expect(spool.recovery.damaged).toEqual([{ file: file.split("/").pop()!, offset: offsets[99]!, bytes: offsets[100]! - offsets[99]!, reason: "bad_crc", records: 1, missing: ["s 100-100"] }]);
      expect(spool.recovery.truncated).toEqual([]);
      expect(spool.recovery.records).toBe(399);
      expect(spool.lastSeq.get("s")).toBe(400);
      spool.close();
      expect(statSync(file).size).toBe(size);
    });
  });

  it("resynchronises after a smashed length field (scanning for the next good record) and says which seqs are gone", async () => {
    await inTempDir(async (dir) => {
      const { file, offsets } = writeSegment(dir, 300);
      const bytes = readFileSync(file);
      // Records 150-152 overwritten from the middle of 150's header to the middle of 152: no length to trust.
      bytes.fill(0xa5, offsets[149]! + 2, offsets[151]! + 20);
      writeFileSync(file, bytes);
      const damage: { offset: number; bytes: number; reason: string }[] = [];
      expect([...Spool.read(file, damage)].map((m) => m.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1).filter((s) => s < 150 || s > 152));
      expect(damage).toEqual([{ offset: offsets[149]!, bytes: offsets[152]! - offsets[149]!, reason: expect.any(String) }]);
      const spool = Spool.open(dir, OPTS);
      expect(spool.recovery.damaged).toEqual([expect.objectContaining({ offset: offsets[149]!, records: null, missing: ["s 150-152"] })]);
      spool.close();
    });
  });

  it("reads a segment whose tail is damaged as far as it can, and only cuts the newest segment's torn or zeroed tail", async () => {
    await inTempDir(async (dir) => {
      const { file } = writeSegment(dir, 50);
      const good = statSync(file).size;
      // A power cut that extended the file with zeros (never written): a torn tail, cut at the next start.
      appendFileSync(file, Buffer.alloc(4096));
      const spool = Spool.open(dir, OPTS);
      expect(spool.recovery.truncated).toEqual([{ file: file.split("/").pop()!, offset: good, bytes: 4096, reason: "bad_length" }]);
      expect(spool.recovery.damaged).toEqual([]);
      spool.close();
      expect(statSync(file).size).toBe(good);
      // The same zeros in a segment that is no longer the newest: kept and reported, never cut.
      appendFileSync(file, Buffer.alloc(100));
      const again = Spool.open(dir, OPTS);
      expect(again.recovery.damaged).toEqual([expect.objectContaining({ file: file.split("/").pop()!, offset: good, bytes: 100 })]);
      again.close();
      expect(statSync(file).size).toBe(good + 100);
    });
  });
});

describe("STATE.json that cannot be written", () => {
  it("does not fail a publish: the records are durable, durable() resolves, and the failure is logged once per interval, not per seal", async () => {
    await inTempDir(async (dir) => {
      mkdirSync(join(dir, "STATE.json"));
      const lines: string[] = [];
      const spool = Spool.open(dir, { ...OPTS, segmentBytes: 1, logger: createLogger("debug", (l) => lines.push(l)) });
      for (let i = 1; i <= 20; i++) {
        spool.append(msg("s", i, `m${i}`));
        await spool.durable();
      }
      expect(spool.stats.writeErrors).toBe(0);
      expect(lines.filter((l) => l.includes("could not write STATE.json")).length).toBe(1);
      spool.close();
      expect(readAll(dir).map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    });
  });
});

describe("seqs are never given twice", () => {
  it("keeps each stream's last seq when STATE.json cannot be written and every sealed segment is compacted away", async () => {
    await inTempDir(async (dir) => {
      // STATE.json cannot be written (a directory stands in its way), as on a full disk at the moment of sealing.
      mkdirSync(join(dir, "STATE.json"));
      const spool = Spool.open(dir, { ...OPTS, segmentBytes: 1 });
      for (let i = 1; i <= 5; i++) {
        spool.append(msg("y", i, `m${i}`));
        spool.flush();
      }
      // What compaction does: every sealed segment goes.
      for (const f of Spool.segments(dir)) if (!spool.current.endsWith(f)) unlinkSync(join(dir, f));
      spool.close();
      const again = Spool.open(dir, OPTS);
      expect(again.lastSeq.get("y")).toBe(5);
      // And once more after the segment written then is compacted too: the new segment begins with the marks.
      const newest = again.current;
      again.close();
      for (const f of Spool.segments(dir)) if (!newest.endsWith(f)) unlinkSync(join(dir, f));
      const third = Spool.open(dir, OPTS);
      expect(third.lastSeq.get("y")).toBe(5);
      third.close();
    });
  });
});

describe("the spool on a failing disk", () => {
  it("rejects durable() when a write fails, instead of acknowledging", async () => {
    await inTempDir(async (dir) => {
      const spool = Spool.open(dir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 50, logger: silentLogger });
      spool.append({ stream: "s", ts: 1, seq: 1, origin: "t", data: "ok", size: 2 });
      await spool.durable();
      // Pull the file out from under it: the next write fails (EBADF), as on an I/O error.
      closeSync((spool as unknown as { fd: number }).fd);
      spool.append({ stream: "s", ts: 2, seq: 2, origin: "t", data: "lost", size: 4 });
      await expect(spool.durable()).rejects.toThrow("the log could not write it");
      expect(spool.stats.writeErrors).toBeGreaterThan(0);
    });
  });
});
