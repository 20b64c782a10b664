import { describe, expect, it } from "bun:test";
import { AppError } from "../app/core/errors.ts";
import { BATCH_MAX_MESSAGES, encodeFrames, splitFrames, splitNdjson } from "../app/sources/http/publish-batch.ts";

const enc = (s: string) => new TextEncoder().encode(s);
/** The AppError `fn` throws (fails the test when it throws nothing or something else). */
function refusal(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("splitNdjson", () => {
  it("takes lines with or without a final newline, and drops the \\r of CRLF", () => {
    expect(splitNdjson(enc("a\nb\n"), 100)).toEqual(["a", "b"]);
    expect(splitNdjson(enc("a\nb"), 100)).toEqual(["a", "b"]);
    expect(splitNdjson(enc("a\r\nb\r\n"), 100)).toEqual(["a", "b"]);
    expect(splitNdjson(enc("ünï\n"), 100)).toEqual(["ünï"]);
  });

  it("refuses an empty body, an empty line and a lone newline, naming the line", () => {
    expect(refusal(() => splitNdjson(enc(""), 100)).message).toContain("the batch is empty");
    expect(refusal(() => splitNdjson(enc("\n"), 100)).data).toEqual({ line: 1 });
    expect(refusal(() => splitNdjson(enc("a\r\n\r\nb"), 100)).data).toEqual({ line: 2 });
  });

  it("counts UTF-8 bytes against max_message_bytes (413 naming the line)", () => {
    expect(splitNdjson(enc("ééé\n"), 6)).toEqual(["ééé"]);
    const e = refusal(() => splitNdjson(enc("ok\néééé\n"), 6));
    expect(e.status).toBe(413);
    expect(e.message).toContain("line 2 is 8 bytes");
  });

  it("names the line of invalid UTF-8, also on the last line without a newline", () => {
    const body = new Uint8Array([...enc("a\nb\n"), 0xc3]);
    expect(refusal(() => splitNdjson(body, 100)).data).toEqual({ line: 3 });
  });

  it("refuses more than the most messages per batch", () => {
    const e = refusal(() => splitNdjson(enc("x\n".repeat(BATCH_MAX_MESSAGES + 1)), 100));
    expect(e.status).toBe(413);
    expect(e.message).toContain(`limit of ${BATCH_MAX_MESSAGES} messages per batch`);
  });
});

describe("splitFrames", () => {
  it("reads back what encodeFrames wrote, byte for byte", () => {
    const msgs = [new Uint8Array([0]), new Uint8Array(300).fill(7), enc("text is bytes too")];
    expect(splitFrames(encodeFrames(msgs), 1000).map((m) => [...m])).toEqual(msgs.map((m) => [...m]));
  });

  it("refuses a zero length, an oversized frame (413) and a cut-short frame, naming frame and offset", () => {
    const two = encodeFrames([enc("ab"), enc("cd")]);
    expect(refusal(() => splitFrames(new Uint8Array([0, 0, 0, 0]), 10)).data).toEqual({ frame: 1, offset: 0 });
    const big = refusal(() => splitFrames(encodeFrames([enc("ab"), enc("x".repeat(11))]), 10));
    expect(big.status).toBe(413);
    expect(big.data).toEqual({ frame: 2, offset: 6, limit: 10 });
    expect(refusal(() => splitFrames(two.subarray(0, 11), 10)).message).toContain("frame 2 at byte 6 says 2 bytes but only 1 follow");
    expect(refusal(() => splitFrames(two.subarray(0, 8), 10)).message).toContain("frame 2 at byte 6 is cut short");
    expect(refusal(() => splitFrames(new Uint8Array(0), 10)).message).toContain("the batch is empty");
  });
});
