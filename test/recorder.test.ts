import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Recorder } from "../app/relay/recorder.ts";
import { inTempDir } from "./support/server.ts";

// Real files in a temp dir; the same default as the other test files.
setDefaultTimeout(60_000);

const msg = (seq: number, data: string | Uint8Array) => ({ stream: "s", ts: seq, seq, origin: "test", data, size: typeof data === "string" ? Buffer.byteLength(data) : data.byteLength });

describe("destination record files", () => {
  it("writes one message per line, binary as base64, and rotates to .1 .2 .3 at the size limit", async () => {
    await inTempDir(async (dir) => {
      const path = join(dir, "records", "spin30.log");
      const rec = new Recorder(path, () => 20);
      rec.write(msg(1, "0123456789")); // 11 bytes with the newline
      rec.write(msg(2, new Uint8Array([255, 0, 1]))); // "/wAB\n": 5 bytes, 16 in all
      rec.write(msg(3, "abcdefghij")); // would pass 20: rotate first
      for (let i = 4; i <= 6; i++) rec.write(msg(i, `line-${i}-xxxxxx`)); // 16 bytes each: one file each
      await rec.close();
      expect(readFileSync(path, "utf8")).toBe("line-6-xxxxxx\n");
      expect(readFileSync(`${path}.1`, "utf8")).toBe("line-5-xxxxxx\n");
      expect(readFileSync(`${path}.2`, "utf8")).toBe("line-4-xxxxxx\n");
      expect(readFileSync(`${path}.3`, "utf8")).toBe("abcdefghij\n");
    });
  });

  it("writes raw bytes back to back in raw format, rotating only between messages", async () => {
    await inTempDir(async (dir) => {
      const path = join(dir, "v.ts");
      const rec = new Recorder(path, () => 6, () => {}, "raw");
      rec.write(msg(1, new Uint8Array([0x47, 1, 2])));
      rec.write(msg(2, "é")); // two bytes of UTF-8
      rec.write(msg(3, new Uint8Array([0x47, 3, 4]))); // would pass 6: rotate first
      await rec.close();
      expect([...readFileSync(`${path}.1`)]).toEqual([0x47, 1, 2, 0xc3, 0xa9]);
      expect([...readFileSync(path)]).toEqual([0x47, 3, 4]);
    });
  });

  it("appends to an existing file after a restart", async () => {
    await inTempDir(async (dir) => {
      const path = join(dir, "r.log");
      const a = new Recorder(path, () => 1_000_000);
      a.write(msg(1, "first"));
      await a.close();
      const b = new Recorder(path, () => 1_000_000);
      b.write(msg(2, "second"));
      await b.close();
      expect(readFileSync(path, "utf8")).toBe("first\nsecond\n");
    });
  });
});
