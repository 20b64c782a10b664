import { BIGINT, DuckDBDataChunk, VARCHAR, type DuckDBAppender } from "@duckdb/node-api";
import duckdb from "@duckdb/node-bindings";
import { ptr } from "bun:ffi";
import { isUtf8 } from "node:buffer";
import type { Message } from "../core/message.ts";
import type { RecordFields } from "./record.ts";

/** The columns of a log row in DuckDB before conversion: ts in µs, text as is, binary as base64. */
export const LOG_ROW_COLUMNS = "ts_us BIGINT, stream VARCHAR, seq BIGINT, origin VARCHAR, kind VARCHAR, data VARCHAR";

/** Rows in one DuckDB data chunk (DuckDB's vector size). */
const CHUNK_ROWS = 2048;
/** Bytes of one DuckDB string (duckdb_string_t): u32 length, then 12 bytes inline, or a 4-byte prefix and a pointer. */
const STRING_T = 16;
const INLINE_MAX = 12;
const TWO_32 = 2 ** 32;
const KIND_BYTES = [new Uint8Array(0), Buffer.from("text"), Buffer.from("binary")];
/** The kind column's strings as whole descriptors (inline), four u32 each. */
const KIND_DESCRIPTORS = KIND_BYTES.map((b) => {
  const d = new Uint8Array(STRING_T);
  new DataView(d.buffer).setUint32(0, b.length, true);
  d.set(b, 4);
  return new Uint32Array(d.buffer);
});

/**
 * Appends spool records to a table of LOG_ROW_COLUMNS column by column, a
 * DuckDB data chunk (2,048 rows) at a time, straight from the record bytes,
 * with a few calls into DuckDB per chunk and none per row: the integers are
 * written into typed arrays, and each string as its 16-byte descriptor
 * (duckdb_string_t, the C API's own layout: short ones, 12 bytes or less,
 * inline; longer ones a pointer to the bytes where they lie, in the caller's
 * buffer), all copied into the chunk's vectors at once. DuckDB's appender
 * copies the strings into its own memory when the chunk is appended (flush),
 * so the bytes a chunk points into must stay as they are until then: a caller
 * that reuses its buffer calls flush() first. Bytes that are not valid UTF-8
 * are decoded as decodeRecord would (with replacement characters), binary
 * payloads written as base64, each into a buffer held here until the flush.
 * (The row appender did this with seven calls into DuckDB per row, 4–6 µs a
 * record; a call per string, 2 µs.)
 */
export class LogRowChunks {
  private readonly chunk = DuckDBDataChunk.create([BIGINT, VARCHAR, BIGINT, VARCHAR, VARCHAR, VARCHAR]);
  private readonly vectors = Array.from({ length: 6 }, (_, i) => duckdb.data_chunk_get_vector(this.chunk.chunk, i));
  private readonly ts = new Uint32Array(CHUNK_ROWS * 2);
  private readonly seq = new Uint32Array(CHUNK_ROWS * 2);
  private readonly tsView = new DataView(this.ts.buffer);
  private readonly seqView = new DataView(this.seq.buffer);
  /** The string descriptors of the stream, origin, kind and data columns (vectors 1, 3, 4, 5). */
  private readonly strings = [0, 1, 2, 3].map(() => new Uint8Array(CHUNK_ROWS * STRING_T));
  private readonly stringViews = this.strings.map((s) => new DataView(s.buffer));
  private readonly kinds = new Uint32Array(this.strings[2]!.buffer);
  /** The buffers this chunk's strings point into, alive until it is appended. */
  private held: Uint8Array[] = [];
  /** The last buffer pointed into, and its address. */
  private lastBuf: Uint8Array | null = null;
  private lastAddress = 0;
  private rows = 0;

  constructor(private readonly appender: DuckDBAppender) {}

  /** Appends the message record whose fields `f` locates in `buf` (see locateRecord); `buf` must stay unchanged until flush(). */
  addRecord(buf: Buffer, f: RecordFields): void {
    const row = this.rows;
    this.setInt(this.tsView, row, Math.round(f.ts));
    this.setInt(this.seqView, row, f.seq);
    this.setText(0, row, buf, f.streamStart, f.streamEnd);
    this.setText(1, row, buf, f.originStart, f.originEnd);
    this.kinds.set(KIND_DESCRIPTORS[f.kind]!, row * 4);
    if (f.kind === 2) this.setOwn(3, row, buf.toString("base64", f.dataStart, f.next));
    else this.setText(3, row, buf, f.dataStart, f.next);
    if (++this.rows === CHUNK_ROWS) this.flush();
  }

  /** Appends a decoded message (the rare paths: a damaged segment read whole). */
  addMessage(m: Message): void {
    const row = this.rows;
    this.setInt(this.tsView, row, Math.round(m.ts));
    this.setInt(this.seqView, row, m.seq);
    this.setOwn(0, row, m.stream);
    this.setOwn(1, row, m.origin);
    this.kinds.set(KIND_DESCRIPTORS[typeof m.data === "string" ? 1 : 2]!, row * 4);
    this.setOwn(3, row, typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64"));
    if (++this.rows === CHUNK_ROWS) this.flush();
  }

  /** Hands the rows gathered so far to the appender (which copies them; DuckDB writes them on its flush or close). */
  flush(): void {
    const n = this.rows;
    if (n === 0) return;
    const v = this.vectors;
    duckdb.copy_data_to_vector(v[0]!, 0, this.ts.buffer, 0, n * 8);
    duckdb.copy_data_to_vector(v[2]!, 0, this.seq.buffer, 0, n * 8);
    duckdb.copy_data_to_vector(v[1]!, 0, this.strings[0]!.buffer, 0, n * STRING_T);
    duckdb.copy_data_to_vector(v[3]!, 0, this.strings[1]!.buffer, 0, n * STRING_T);
    duckdb.copy_data_to_vector(v[4]!, 0, this.strings[2]!.buffer, 0, n * STRING_T);
    duckdb.copy_data_to_vector(v[5]!, 0, this.strings[3]!.buffer, 0, n * STRING_T);
    duckdb.data_chunk_set_size(this.chunk.chunk, n);
    try {
      this.appender.appendDataChunk(this.chunk);
    } finally {
      duckdb.data_chunk_reset(this.chunk.chunk);
      this.held = [];
      this.lastBuf = null;
      this.rows = 0;
    }
  }

  /** A whole number (|n| < 2^53, as the spool's f64 fields are) as an int64 at `row`, without making a BigInt. */
  private setInt(view: DataView, row: number, n: number): void {
    if (n >= 0 && n <= Number.MAX_SAFE_INTEGER) {
      view.setUint32(row * 8, n % TWO_32, true);
      view.setUint32(row * 8 + 4, Math.floor(n / TWO_32), true);
    } else {
      view.setBigInt64(row * 8, BigInt(n), true);
    }
  }

  /** Column `col` of `row` set to the bytes `buf[start, end)`, decoded as UTF-8 with replacement characters when they are not valid UTF-8 (DuckDB would take them as NULL). */
  private setText(col: number, row: number, buf: Buffer, start: number, end: number): void {
    if (isAscii(buf, start, end) || isUtf8(buf.subarray(start, end))) this.setString(col, row, buf, start, end);
    else this.setOwn(col, row, buf.toString("utf8", start, end));
  }

  /** Column `col` of `row` set to `text`, in a buffer held until the flush. */
  private setOwn(col: number, row: number, text: string): void {
    const bytes = Buffer.from(text);
    this.setString(col, row, bytes, 0, bytes.length);
  }

  /** Column `col` of `row` set to the (valid UTF-8) bytes `buf[start, end)`: inline, or pointed at where they lie. */
  private setString(col: number, row: number, buf: Uint8Array, start: number, end: number): void {
    const len = end - start;
    const at = row * STRING_T;
    const strings = this.strings[col]!;
    const view = this.stringViews[col]!;
    view.setUint32(at, len, true);
    if (len <= INLINE_MAX) {
      for (let i = 0; i < INLINE_MAX; i++) strings[at + 4 + i] = i < len ? buf[start + i]! : 0;
      return;
    }
    // The first 4 bytes (DuckDB compares by them first), then the address of the whole.
    for (let i = 0; i < 4; i++) strings[at + 4 + i] = buf[start + i]!;
    if (buf !== this.lastBuf) {
      this.lastBuf = buf;
      this.lastAddress = ptr(buf);
      this.held.push(buf);
    }
    const address = this.lastAddress + start;
    view.setUint32(at + 8, address % TWO_32, true);
    view.setUint32(at + 12, Math.floor(address / TWO_32), true);
  }
}

/** True when `buf[start, end)` is ASCII alone (checked here for short strings: a call to isUtf8 costs more). */
function isAscii(buf: Uint8Array, start: number, end: number): boolean {
  if (end - start > 64) return false;
  for (let i = start; i < end; i++) if (buf[i]! >= 0x80) return false;
  return true;
}
