/**
 * The framing between the hub and its child processes (query engine,
 * compaction) over stdin/stdout: each frame is a u32 little-endian length and
 * that many bytes of UTF-8 JSON, an object. One whose `rawBytes` is a number is
 * followed by that many bytes as they are (an answer's body), handed over as
 * the object's `raw`: a body of tens of MB goes through neither JSON's escaping
 * nor a string on the hub's side (inside a JSON frame, a 19 MB answer took the
 * hub from 75 to 188 MiB). One frame type per message; nothing else is ever
 * written to the pipe (logs go to stderr).
 */

/** Largest frame accepted, and largest body after one (a result is capped well below it). */
export const MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/** Encodes one frame, followed by `raw` (UTF-8 for a string) as its `raw` when given. */
export function encodeFrame(value: object, raw?: string | Uint8Array): Uint8Array {
  const rawBytes = raw === undefined ? 0 : typeof raw === "string" ? Buffer.byteLength(raw, "utf8") : raw.byteLength;
  const json = JSON.stringify(raw === undefined ? value : { ...value, rawBytes });
  const length = Buffer.byteLength(json, "utf8");
  // Written straight into the frame: an answer of tens of MB is not copied once more.
  const out = Buffer.allocUnsafe(4 + length + rawBytes);
  out.writeUInt32LE(length, 0);
  out.write(json, 4, "utf8");
  if (typeof raw === "string") out.write(raw, 4 + length, "utf8");
  else if (raw) out.set(raw, 4 + length);
  return out;
}

/** Cuts a byte stream into frames: feed it chunks, it calls `onFrame` for each whole frame. */
export class FrameReader {
  /** Bytes received and not yet used, as they came (joined only once a whole frame is there). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Length of the frame being received, once its header is in. */
  private need = -1;
  /** A frame read whose raw bytes are still coming, and how many. */
  private waiting: { value: { raw?: Buffer }; bytes: number } | null = null;

  constructor(private readonly onFrame: (value: unknown) => void) {}

  push(chunk: Uint8Array): void {
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.byteLength;
    for (;;) {
      if (this.waiting) {
        const { value, bytes } = this.waiting;
        if (this.buffered < bytes) return;
        if (bytes === 0) {
          value.raw = Buffer.alloc(0);
        } else {
          const all = this.join();
          // A view while it is most of what was joined, else a copy: a small body must not keep a big one's bytes.
          value.raw = bytes * 2 >= all.length ? all.subarray(0, bytes) : Buffer.from(all.subarray(0, bytes));
          this.take(all, bytes);
        }
        this.waiting = null;
        this.onFrame(value);
        continue;
      }
      if (this.need < 0) {
        if (this.buffered < 4) return;
        const length = this.join().readUInt32LE(0);
        if (length > MAX_FRAME_BYTES) throw new Error(`frame of ${length} bytes is larger than allowed (${MAX_FRAME_BYTES})`);
        this.need = length;
      }
      if (this.buffered < 4 + this.need) return;
      const all = this.join();
      const value = JSON.parse(all.toString("utf8", 4, 4 + this.need));
      this.take(all, 4 + this.need);
      this.need = -1;
      if (value === null || typeof value !== "object" || !("rawBytes" in value)) {
        this.onFrame(value);
        continue;
      }
      const bytes = value.rawBytes;
      if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`a frame's rawBytes must be a whole number of bytes, 0 or more, not ${JSON.stringify(bytes)}`);
      if (bytes > MAX_FRAME_BYTES) throw new Error(`a frame's body of ${bytes} bytes is larger than allowed (${MAX_FRAME_BYTES})`);
      delete value.rawBytes;
      this.waiting = { value, bytes };
    }
  }

  /** Drops the first `n` bytes of `all` (the joined buffer) from what is buffered (the rest copied when small, not to keep all of it). */
  private take(all: Buffer, n: number): void {
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest.length * 2 < all.length ? Buffer.from(rest) : rest] : [];
    this.buffered = rest.length;
  }

  /** The buffered bytes as one buffer (kept joined). */
  private join(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!;
  }
}

/** Reads frames from a byte stream until it ends. */
export async function readFrames(stream: ReadableStream<Uint8Array>, onFrame: (value: unknown) => void): Promise<void> {
  const reader = new FrameReader(onFrame);
  for await (const chunk of stream) reader.push(chunk);
}
