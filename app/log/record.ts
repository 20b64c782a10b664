import type { Message } from "../core/message.ts";
import type { SegmentDamage } from "./spool.ts";

/**
 * One spool record, little-endian:
 *
 *   u32 body length | u32 CRC-32 of body | body
 *   body = u8 kind (1 text, 2 binary, 3 marks) | f64 ts (µs) | f64 seq | u16 stream length | stream (UTF-8)
 *          | u16 origin length | origin (UTF-8) | data
 *
 * The CRC (Bun.hash.crc32) lets recovery tell a torn or corrupt record from data.
 * A marks record (kind 3: no stream or origin, seq 0, data a JSON
 * `{"last_segment": N, "last_seq": {stream: seq}}`) opens every segment: the
 * high-water mark of every stream when the segment began, so the newest segment
 * alone says where each stream's seq goes on, whatever happened to older ones.
 */
export const HEADER_BYTES = 8;
const FIXED_BODY = 1 + 8 + 8 + 2 + 2;
/** Largest body accepted when reading: anything bigger is corruption. */
export const MAX_BODY_BYTES = 256 * 1024 * 1024;
const KIND_TEXT = 1;
const KIND_BINARY = 2;
const KIND_MARKS = 3;

/** Each stream's highest seq given out, and the segment number of the file the marks open. */
export interface Marks {
  last_segment: number;
  last_seq: Record<string, number>;
}

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
  return encodeInto(buf, offset, typeof m.data === "string" ? KIND_TEXT : KIND_BINARY, m.ts, m.seq, m.stream, m.origin, m.data);
}

function encodeInto(buf: Buffer, offset: number, kind: number, ts: number, seq: number, stream: string, origin0: string, data: string | Uint8Array): number {
  const start = offset + HEADER_BYTES;
  let o = start;
  buf[o] = kind; o += 1;
  buf.writeDoubleLE(ts, o); o += 8;
  buf.writeDoubleLE(seq, o); o += 8;
  const streamLength = buf.write(stream, o + 2, "utf8");
  buf.writeUInt16LE(streamLength, o); o += 2 + streamLength;
  const origin = origin0.length > 21_845 ? origin0.slice(0, 21_845) : origin0;
  const originLength = buf.write(origin, o + 2, "utf8");
  buf.writeUInt16LE(originLength, o); o += 2 + originLength;
  if (typeof data === "string") o += buf.write(data, o, "utf8");
  else { buf.set(data, o); o += data.byteLength; }
  buf.writeUInt32LE(o - start, offset);
  buf.writeUInt32LE(Bun.hash.crc32(buf.subarray(start, o)), offset + 4);
  return o;
}

/** Encodes a message as one record, in a buffer of its own. */
export function encodeRecord(m: Message): Buffer {
  const buf = Buffer.allocUnsafe(recordBound(m));
  return buf.subarray(0, encodeRecordInto(buf, 0, m));
}

/** Encodes a marks record (see the file comment). */
export function encodeMarks(marks: Marks, nowMicros = Date.now() * 1000): Buffer {
  const json = JSON.stringify(marks);
  const buf = Buffer.allocUnsafe(HEADER_BYTES + FIXED_BODY + 3 * json.length);
  return buf.subarray(0, encodeInto(buf, 0, KIND_MARKS, nowMicros, 0, "", "", json));
}

/** Why the bytes at an offset are not a record. */
export type BadRecord = "incomplete" | "bad_length" | "bad_crc" | "bad_body";

/** A decoded record (a message, or a segment's marks), or why the bytes at `offset` are not one. */
export type DecodeResult =
  | { ok: true; message: Message; next: number }
  | { ok: true; marks: Marks; next: number }
  | { ok: false; reason: BadRecord };

/**
 * Where the fields of a message record lie in its buffer (absolute offsets),
 * for readers that copy the bytes on without making strings of them (the query
 * engine's columnar load). `kind` is 1 (text) or 2 (binary).
 */
export interface RecordFields {
  kind: number;
  ts: number;
  seq: number;
  streamStart: number;
  streamEnd: number;
  originStart: number;
  originEnd: number;
  dataStart: number;
  /** Where the record ends (the next one starts). */
  next: number;
}

/**
 * Checks the record at `offset` of `buf` (header, CRC, kind, lengths; a
 * message's seq) and fills `out` with where its fields are. The one check that
 * locateRecord and decodeRecord share.
 */
function locate(buf: Buffer, offset: number, out: RecordFields): BadRecord | null {
  if (buf.length - offset < HEADER_BYTES) return "incomplete";
  const bodyLength = buf.readUInt32LE(offset);
  if (bodyLength < FIXED_BODY || bodyLength > MAX_BODY_BYTES) return "bad_length";
  const start = offset + HEADER_BYTES;
  const end = start + bodyLength;
  if (end > buf.length) return "incomplete";
  if (Bun.hash.crc32(buf.subarray(start, end)) !== buf.readUInt32LE(offset + 4)) return "bad_crc";
  const kind = buf[start]!;
  let o = start + 1;
  const ts = buf.readDoubleLE(o); o += 8;
  const seq = buf.readDoubleLE(o); o += 8;
  const streamLength = buf.readUInt16LE(o); o += 2;
  if (o + streamLength + 2 > end || (kind !== KIND_TEXT && kind !== KIND_BINARY && kind !== KIND_MARKS) || !Number.isFinite(ts)) return "bad_body";
  out.streamStart = o;
  o += streamLength;
  out.streamEnd = o;
  const originLength = buf.readUInt16LE(o); o += 2;
  if (o + originLength > end) return "bad_body";
  if (kind !== KIND_MARKS && (!Number.isInteger(seq) || seq < 1)) return "bad_body";
  out.originStart = o;
  o += originLength;
  out.originEnd = o;
  out.kind = kind;
  out.ts = ts;
  out.seq = seq;
  out.dataStart = o;
  out.next = end;
  return null;
}

/** The marks a marks record located in `buf` holds, or null when its body is not valid marks. */
function marksOf(buf: Buffer, f: RecordFields): Marks | null {
  try {
    const marks = JSON.parse(buf.toString("utf8", f.dataStart, f.next));
    if (Number.isInteger(marks?.last_segment) && typeof marks.last_seq === "object" && marks.last_seq !== null) return marks;
  } catch {
    // not JSON
  }
  return null;
}

/**
 * Checks the record at `offset` of `buf` exactly as decodeRecord does and, for
 * a message, fills `out` with where its fields are and returns "message"; a
 * segment's marks record returns "marks"; an unreadable one returns why.
 */
export function locateRecord(buf: Buffer, offset: number, out: RecordFields): "message" | "marks" | BadRecord {
  const bad = locate(buf, offset, out);
  if (bad) return bad;
  if (out.kind !== KIND_MARKS) return "message";
  return marksOf(buf, out) ? "marks" : "bad_body";
}

/** Where decodeRecord's record lies (reused: decoding is synchronous). */
const decoding = {} as RecordFields;

/** Decodes the record at `offset` of `buf`. */
export function decodeRecord(buf: Buffer, offset: number): DecodeResult {
  const f = decoding;
  const bad = locate(buf, offset, f);
  if (bad) return { ok: false, reason: bad };
  if (f.kind === KIND_MARKS) {
    const marks = marksOf(buf, f);
    return marks ? { ok: true, marks, next: f.next } : { ok: false, reason: "bad_body" };
  }
  const stream = buf.toString("utf8", f.streamStart, f.streamEnd);
  const origin = buf.toString("utf8", f.originStart, f.originEnd);
  const raw = buf.subarray(f.dataStart, f.next);
  const data = f.kind === KIND_TEXT ? raw.toString("utf8") : new Uint8Array(raw);
  return { ok: true, message: { stream, ts: f.ts, seq: f.seq, origin, data, size: raw.length }, next: f.next };
}

/** One step of `scanRecords`: a record, or an unreadable stretch (with how many records it held, when that is knowable). */
export type ScanStep =
  | { record: Exclude<DecodeResult, { ok: false }>; offset: number }
  | { damage: SegmentDamage & { records: number | null; tail: boolean } };

/**
 * Every record of `buf` in order, resynchronising after a bad one: when the bad
 * record's own length leads to a good record, exactly that record is skipped;
 * otherwise the bytes are searched for the next offset where a plausible header,
 * a matching CRC and a well-formed body parse. Each unreadable stretch is
 * reported once (`tail` when nothing readable follows it).
 */
export function* scanRecords(buf: Buffer, from = 0): Generator<ScanStep> {
  let offset = from;
  while (offset < buf.length) {
    const r = decodeRecord(buf, offset);
    if (r.ok) {
      yield { record: r, offset };
      offset = r.next;
      continue;
    }
    let next = -1;
    let records: number | null = null;
    if (r.reason === "bad_crc" || r.reason === "bad_body") {
      // The length field may still be right: then one record is lost and the next starts where it says.
      const after = offset + HEADER_BYTES + buf.readUInt32LE(offset);
      if (after === buf.length || decodeRecord(buf, after).ok) {
        next = after;
        records = 1;
      }
    }
    if (next < 0) next = nextPlausible(buf, offset + 1);
    yield { damage: { offset, bytes: next - offset, reason: r.reason, records, tail: next === buf.length } };
    offset = next;
  }
}

/** The first offset at or after `from` where a whole, CRC-checked record starts; `buf.length` if none does. */
function nextPlausible(buf: Buffer, from: number): number {
  const last = buf.length - HEADER_BYTES - FIXED_BODY;
  for (let y = from; y <= last; y++) {
    // Cheap checks first: a length that fits and a known kind, before the CRC.
    const kind = buf[y + HEADER_BYTES];
    if (kind !== KIND_TEXT && kind !== KIND_BINARY && kind !== KIND_MARKS) continue;
    const length = buf.readUInt32LE(y);
    if (length < FIXED_BODY || y + HEADER_BYTES + length > buf.length) continue;
    if (decodeRecord(buf, y).ok) return y;
  }
  return buf.length;
}
