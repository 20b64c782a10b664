/**
 * The framing between the hub and its child processes (query engine,
 * compaction) over stdin/stdout: each frame is a u32 little-endian length and
 * that many bytes of UTF-8 JSON. One frame type per message; nothing else is
 * ever written to the pipe (logs go to stderr).
 */

/** Largest frame accepted (a result is capped well below it). */
export const MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/** Encodes one frame. */
export function encodeFrame(value: unknown): Uint8Array {
  // Written straight into the frame: an answer of tens of MB is not copied once more.
  const json = JSON.stringify(value);
  const length = Buffer.byteLength(json, "utf8");
  const out = Buffer.allocUnsafe(4 + length);
  out.writeUInt32LE(length, 0);
  out.write(json, 4, "utf8");
  return out;
}

/** Cuts a byte stream into frames: feed it chunks, it calls `onFrame` for each whole frame. */
export class FrameReader {
  /** Bytes received and not yet used, as they came (joined only once a whole frame is there). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Length of the frame being received, once its header is in. */
  private need = -1;

  constructor(private readonly onFrame: (value: unknown) => void) {}

  push(chunk: Uint8Array): void {
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.byteLength;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 4) return;
        const length = this.join().readUInt32LE(0);
        if (length > MAX_FRAME_BYTES) throw new Error(`frame of ${length} bytes is larger than allowed (${MAX_FRAME_BYTES})`);
        this.need = length;
      }
      if (this.buffered < 4 + this.need) return;
      const all = this.join();
      const body = all.toString("utf8", 4, 4 + this.need);
      const rest = all.subarray(4 + this.need);
      this.chunks = rest.length ? [rest] : [];
      this.buffered = rest.length;
      this.need = -1;
      this.onFrame(JSON.parse(body));
    }
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
