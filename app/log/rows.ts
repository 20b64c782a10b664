import { BIGINT, DuckDBDataChunk, VARCHAR, type DuckDBAppender } from "@duckdb/node-api";
import duckdb from "@duckdb/node-bindings";
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

/**
 * Appends spool records to a table of LOG_ROW_COLUMNS column by column, a
 * DuckDB data chunk (2,048 rows) at a time, straight from the record bytes:
 * what the row appender did with seven calls into DuckDB per row and a string
 * made of every field (4–6 µs a record), this does with one call per row (its
 * payload) and a few per chunk. The integers are written into typed arrays and
 * copied into the chunk's vectors at once; the strings that repeat (stream,
 * origin, kind) are stored in DuckDB once per chunk and their 16-byte
 * descriptors copied to the other rows (duckdb_string_t, the C API's own
 * layout; short ones, 12 bytes or less, are inline and need no call at all).
 * Bytes that are not valid UTF-8 are decoded as decodeRecord would (with
 * replacement characters): DuckDB would take them as NULL.
 */
export class LogRowChunks {
  private readonly chunk = DuckDBDataChunk.create([BIGINT, VARCHAR, BIGINT, VARCHAR, VARCHAR, VARCHAR]);
  private readonly vectors = Array.from({ length: 6 }, (_, i) => duckdb.data_chunk_get_vector(this.chunk.chunk, i));
  private readonly ts = new Uint32Array(CHUNK_ROWS * 2);
  private readonly seq = new Uint32Array(CHUNK_ROWS * 2);
  private readonly tsView = new DataView(this.ts.buffer);
  private readonly seqView = new DataView(this.seq.buffer);
  /** The 16-byte string descriptors of the stream, origin and kind columns. */
  private readonly strings = [1, 3, 4].map(() => new Uint8Array(CHUNK_ROWS * STRING_T));
  private readonly stringViews = this.strings.map((s) => new DataView(s.buffer));
  /** This chunk's longer strings already stored in DuckDB, by their bytes (latin1), per column: the row that holds each. */
  private readonly stored = [new Map<string, number>(), new Map<string, number>(), new Map<string, number>()];
  /**
   * Per column and row: -1 when the row's descriptor is written here, else the
   * row whose descriptor DuckDB holds for the same string (the row itself when
   * the string was stored there): copied over at flush, with one read of the
   * vector's descriptors.
   */
  private readonly refs = [0, 1, 2].map(() => new Int32Array(CHUNK_ROWS));
  private readonly hasRefs = [false, false, false];
  /** The last longer string stored per column, and the row that holds it (-1: none in this chunk). */
  private readonly last = [0, 1, 2].map(() => ({ bytes: new Uint8Array(0), row: -1 }));
  private rows = 0;

  constructor(private readonly appender: DuckDBAppender) {}

  /** Appends the message record whose fields `f` locates in `buf` (see locateRecord). */
  addRecord(buf: Buffer, f: RecordFields): void {
    const row = this.rows;
    this.setInt(this.tsView, row, Math.round(f.ts));
    this.setInt(this.seqView, row, f.seq);
    this.setString(0, row, buf, f.streamStart, f.streamEnd);
    this.setString(1, row, buf, f.originStart, f.originEnd);
    this.setString(2, row, KIND_BYTES[f.kind]!, 0, KIND_BYTES[f.kind]!.length);
    const data = buf.subarray(f.dataStart, f.next);
    if (f.kind === 2) duckdb.vector_assign_string_element(this.vectors[5]!, row, data.toString("base64"));
    else if (isUtf8(data)) duckdb.vector_assign_string_element_len(this.vectors[5]!, row, data);
    else duckdb.vector_assign_string_element(this.vectors[5]!, row, data.toString("utf8"));
    if (++this.rows === CHUNK_ROWS) this.flush();
  }

  /** Appends a decoded message (the rare paths: a damaged segment read whole). */
  addMessage(m: Message): void {
    const row = this.rows;
    this.setInt(this.tsView, row, Math.round(m.ts));
    this.setInt(this.seqView, row, m.seq);
    const stream = Buffer.from(m.stream), origin = Buffer.from(m.origin);
    this.setString(0, row, stream, 0, stream.length);
    this.setString(1, row, origin, 0, origin.length);
    const kind = typeof m.data === "string" ? 1 : 2;
    this.setString(2, row, KIND_BYTES[kind]!, 0, KIND_BYTES[kind]!.length);
    duckdb.vector_assign_string_element(this.vectors[5]!, row, typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64"));
    if (++this.rows === CHUNK_ROWS) this.flush();
  }

  /** Hands the rows gathered so far to the appender (which DuckDB writes on its flush or close). */
  flush(): void {
    const n = this.rows;
    if (n === 0) return;
    const v = this.vectors;
    for (let col = 0; col < 3; col++) {
      if (!this.hasRefs[col]) continue;
      // The descriptors of the strings DuckDB stored, read once, copied to every row that uses them.
      const held = duckdb.vector_get_data(v[col === 0 ? 1 : col === 1 ? 3 : 4]!, n * STRING_T);
      const refs = this.refs[col]!, strings = this.strings[col]!;
      for (let row = 0; row < n; row++) {
        const from = refs[row]!;
        if (from >= 0) strings.set(held.subarray(from * STRING_T, from * STRING_T + STRING_T), row * STRING_T);
      }
    }
    duckdb.copy_data_to_vector(v[0]!, 0, this.ts.buffer, 0, n * 8);
    duckdb.copy_data_to_vector(v[2]!, 0, this.seq.buffer, 0, n * 8);
    duckdb.copy_data_to_vector(v[1]!, 0, this.strings[0]!.buffer, 0, n * STRING_T);
    duckdb.copy_data_to_vector(v[3]!, 0, this.strings[1]!.buffer, 0, n * STRING_T);
    duckdb.copy_data_to_vector(v[4]!, 0, this.strings[2]!.buffer, 0, n * STRING_T);
    duckdb.data_chunk_set_size(this.chunk.chunk, n);
    try {
      this.appender.appendDataChunk(this.chunk);
    } finally {
      // The chunk's strings go with the reset: so do the descriptors that pointed at them.
      duckdb.data_chunk_reset(this.chunk.chunk);
      for (const m of this.stored) m.clear();
      for (const l of this.last) l.row = -1;
      this.hasRefs.fill(false);
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

  /** Sets column `col` (0 stream, 1 origin, 2 kind) of `row` to the UTF-8 string `buf[start, end)`. */
  private setString(col: number, row: number, buf: Uint8Array, start: number, end: number): void {
    const len = end - start;
    const at = row * STRING_T;
    const strings = this.strings[col]!;
    if (len <= INLINE_MAX && isAscii(buf, start, end)) {
      this.stringViews[col]!.setUint32(at, len, true);
      for (let i = 0; i < INLINE_MAX; i++) strings[at + 4 + i] = i < len ? buf[start + i]! : 0;
      this.refs[col]![row] = -1;
      return;
    }
    this.hasRefs[col] = true;
    // Most rows repeat the previous row's value: compared byte by byte before any lookup.
    const last = this.last[col]!;
    if (last.row >= 0 && last.bytes.length === len && sameBytes(last.bytes, buf, start)) {
      this.refs[col]![row] = last.row;
      return;
    }
    const key = Buffer.from(buf.buffer, buf.byteOffset + start, len).toString("latin1");
    let holder = this.stored[col]!.get(key);
    if (holder === undefined) {
      const vector = this.vectors[col === 0 ? 1 : col === 1 ? 3 : 4]!;
      const bytes = buf.subarray(start, end);
      if (isUtf8(bytes)) duckdb.vector_assign_string_element_len(vector, row, bytes);
      else duckdb.vector_assign_string_element(vector, row, Buffer.from(bytes).toString("utf8"));
      holder = row;
      this.stored[col]!.set(key, holder);
    }
    this.refs[col]![row] = holder;
    last.bytes = buf.slice(start, end);
    last.row = holder;
  }
}

function sameBytes(a: Uint8Array, buf: Uint8Array, start: number): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== buf[start + i]) return false;
  return true;
}

function isAscii(buf: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i]! >= 0x80) return false;
  return true;
}
