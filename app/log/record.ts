import type { Message } from "../core/message.ts";

/**
 * One spool record, little-endian:
 *
 *   u32 body length | u32 CRC-32 of body | body
 *   body = u8 kind (1 text, 2 binary) | f64 ts (µs) | f64 seq | u16 stream length | stream (UTF-8)
 *          | u16 origin length | origin (UTF-8) | data
 *
 * The CRC (Bun.hash.crc32) lets recovery tell a torn or corrupt tail from data.
 */
export const HEADER_BYTES = 8;
const FIXED_BODY = 1 + 8 + 8 + 2 + 2;
/** Largest body accepted when reading: anything bigger is corruption. */
export const MAX_BODY_BYTES = 256 * 1024 * 1024;

/** An upper bound of a message's record size, without measuring strings (UTF-8 is at most 3 bytes per UTF-16 unit). */
export function recordBound(m: Message): number {
  return HEADER_BYTES + FIXED_BODY + 3 * m.stream.length + 3 * Math.min(m.origin.length, 21_845) + (typeof m.data === "string" ? 3 * m.data.length : m.data.byteLength);
}

/**
 * Encodes a message as one record into `buf` at `offset` (which must have
 * `recordBound(m)` bytes free) and returns the offset after it. Strings are
 * written straight into the buffer: no allocation per message.
 */
export function encodeRecordInto(buf: Buffer, offset: number, m: Message): number {
  const start = offset + HEADER_BYTES;
  let o = start;
  buf[o] = typeof m.data === "string" ? 1 : 2; o += 1;
  buf.writeDoubleLE(m.ts, o); o += 8;
  buf.writeDoubleLE(m.seq, o); o += 8;
  const streamLength = buf.write(m.stream, o + 2, "utf8");
  buf.writeUInt16LE(streamLength, o); o += 2 + streamLength;
  const origin = m.origin.length > 21_845 ? m.origin.slice(0, 21_845) : m.origin;
  const originLength = buf.write(origin, o + 2, "utf8");
  buf.writeUInt16LE(originLength, o); o += 2 + originLength;
  if (typeof m.data === "string") o += buf.write(m.data, o, "utf8");
  else { buf.set(m.data, o); o += m.data.byteLength; }
  buf.writeUInt32LE(o - start, offset);
  buf.writeUInt32LE(Bun.hash.crc32(buf.subarray(start, o)), offset + 4);
  return o;
}

/** Encodes a message as one record, in a buffer of its own. */
export function encodeRecord(m: Message): Buffer {
  const buf = Buffer.allocUnsafe(recordBound(m));
  return buf.subarray(0, encodeRecordInto(buf, 0, m));
}

/** A decoded record, or why the bytes at `offset` are not one. */
export type DecodeResult =
  | { ok: true; message: Message; next: number }
  | { ok: false; reason: "incomplete" | "bad_length" | "bad_crc" | "bad_body" };

/** Decodes the record at `offset` of `buf`. */
export function decodeRecord(buf: Buffer, offset: number): DecodeResult {
  if (buf.length - offset < HEADER_BYTES) return { ok: false, reason: "incomplete" };
  const bodyLength = buf.readUInt32LE(offset);
  if (bodyLength < FIXED_BODY || bodyLength > MAX_BODY_BYTES) return { ok: false, reason: "bad_length" };
  const start = offset + HEADER_BYTES;
  const end = start + bodyLength;
  if (end > buf.length) return { ok: false, reason: "incomplete" };
  const body = buf.subarray(start, end);
  if (Bun.hash.crc32(body) !== buf.readUInt32LE(offset + 4)) return { ok: false, reason: "bad_crc" };
  let o = 0;
  const kind = body.readUInt8(o); o += 1;
  const ts = body.readDoubleLE(o); o += 8;
  const seq = body.readDoubleLE(o); o += 8;
  const streamLength = body.readUInt16LE(o); o += 2;
  if (o + streamLength + 2 > body.length || (kind !== 1 && kind !== 2)) return { ok: false, reason: "bad_body" };
  const stream = body.toString("utf8", o, o + streamLength); o += streamLength;
  const originLength = body.readUInt16LE(o); o += 2;
  if (o + originLength > body.length) return { ok: false, reason: "bad_body" };
  const origin = body.toString("utf8", o, o + originLength); o += originLength;
  const raw = body.subarray(o);
  const data = kind === 1 ? raw.toString("utf8") : new Uint8Array(raw);
  return { ok: true, message: { stream, ts, seq, origin, data, size: raw.length }, next: end };
}
