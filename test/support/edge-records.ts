import { decodeRecord } from "../../app/log/record.ts";

/** A record of `kind` whose stream, origin and payload are exactly the bytes given (not UTF-8, say), its CRC right. */
export function rawRecord(seq: number, stream: Uint8Array, origin: Uint8Array, data: Uint8Array, kind = 1, ts = 1_795_392_000_000_000 + seq): Buffer {
  const body = Buffer.alloc(1 + 8 + 8 + 2 + stream.length + 2 + origin.length + data.length);
  let o = 0;
  body[o] = kind; o += 1;
  body.writeDoubleLE(ts, o); o += 8;
  body.writeDoubleLE(seq, o); o += 8;
  body.writeUInt16LE(stream.length, o); o += 2;
  body.set(stream, o); o += stream.length;
  body.writeUInt16LE(origin.length, o); o += 2;
  body.set(origin, o); o += origin.length;
  body.set(data, o);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(body.length, 0);
  head.writeUInt32LE(Bun.hash.crc32(body), 4);
  return Buffer.concat([head, body]);
}

/**
 * String fields that sit on the edges of DuckDB's string layout: empty, 11–14
 * bytes (12 inline, 13 a prefix and a pointer), multi-byte characters cut by
 * the 4-byte prefix, NUL bytes, ASCII either side of the 64 bytes checked
 * without isUtf8, and bytes that are not UTF-8 (overlong, surrogates, past
 * U+10FFFF, cut short), short and long.
 */
export const EDGE_STRINGS: Buffer[] = [
  ...["", "a", "abcdefghijk", "abcdefghijkl", "abcdefghijklm", "abcdefghijklmn"].map((s) => Buffer.from(s)),
  ...["ééééééé", "aéééééé", "abcé", "😀😀😀", "😀😀😀a", "a😀😀😀", "ab😀😀😀", "\uFFFE\uFFFF", "é".repeat(40)].map((s) => Buffer.from(s)),
  ...["\0".repeat(12), "\0".repeat(13), "a\0b", "abcdefghijkl\0m"].map((s) => Buffer.from(s)),
  Buffer.from("x".repeat(64)), Buffer.from("x".repeat(65)),
  Buffer.from([0xff]), Buffer.from([0xc0, 0x80]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]), Buffer.from([0x80]), Buffer.from([0xf0, 0x9f, 0x98]),
  Buffer.concat([Buffer.from("abcdefghijkl"), Buffer.from([0xff])]),
  Buffer.concat([Buffer.from("é".repeat(6)), Buffer.from([0xc3])]),
  Buffer.concat([Buffer.from("y".repeat(70)), Buffer.from([0xed, 0xbf, 0xbf])]),
  Buffer.concat([Buffer.from([0xe2, 0x82]), Buffer.from("z".repeat(20))]),
];

/** Every field of the message record at each offset of `buf`, as decodeRecord reads it (binary as base64). */
export function decodedRows(buf: Buffer): { seq: number; ts: number; stream: string; origin: string; kind: string; data: string }[] {
  const out = [];
  for (let o = 0; o < buf.length;) {
    const d = decodeRecord(buf, o);
    if (!d.ok || !("message" in d)) throw new Error(`record at ${o} unreadable`);
    const m = d.message;
    out.push({ seq: m.seq, ts: m.ts, stream: m.stream, origin: m.origin, kind: typeof m.data === "string" ? "text" : "binary", data: typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64") });
    o = d.next;
  }
  return out;
}
