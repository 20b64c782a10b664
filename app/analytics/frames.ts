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
  const body = Buffer.from(JSON.stringify(value), "utf8");
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32LE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Cuts a byte stream into frames: feed it chunks, it calls `onFrame` for each whole frame. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (value: unknown) => void) {}

  push(chunk: Uint8Array): void {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 4) {
      const length = this.buf.readUInt32LE(0);
      if (length > MAX_FRAME_BYTES) throw new Error(`frame of ${length} bytes is larger than allowed (${MAX_FRAME_BYTES})`);
      if (this.buf.length < 4 + length) break;
      const body = this.buf.toString("utf8", 4, 4 + length);
      this.buf = this.buf.subarray(4 + length);
      this.onFrame(JSON.parse(body));
    }
  }
}

/** Reads frames from a byte stream until it ends. */
export async function readFrames(stream: ReadableStream<Uint8Array>, onFrame: (value: unknown) => void): Promise<void> {
  const reader = new FrameReader(onFrame);
  for await (const chunk of stream) reader.push(chunk);
}
