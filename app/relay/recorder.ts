import { closeSync, fstatSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { Message } from "../core/message.ts";

const KEEP = 3;

/**
 * How a record file holds messages: `raw`, each message's bytes back to back with
 * no separator (as practable records: a recorded MPEG-TS stream is a playable
 * .ts file); `lines`, one message per line, binary as base64.
 */
export const RECORD_FORMATS = ["raw", "lines"] as const;
export type RecordFormat = (typeof RECORD_FORMATS)[number];

/**
 * Appends every message a destination sends to its `file` in `format`, and
 * rotates the file to .1, .2, .3 when it would pass `maxBytes` (a rotation
 * falls between two messages, never inside one). Writes are gathered and made
 * once per event-loop turn; a failed write is reported through `onError`, never
 * thrown at the sender.
 */
export class Recorder {
  private fd: number;
  private size: number;
  private pending: Uint8Array[] = [];
  private scheduled = false;

  constructor(readonly path: string, private readonly maxBytes: () => number, private readonly onError: (message: string) => void = () => {}, readonly format: RecordFormat = "lines") {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, "a");
    this.size = fstatSync(this.fd).size;
  }

  write(m: Message): void {
    if (this.format === "raw") this.pending.push(typeof m.data === "string" ? Buffer.from(m.data) : m.data);
    else this.pending.push(Buffer.from((typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64")) + "\n"));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes what is pending and closes the file. */
  async close(): Promise<void> {
    this.flush();
    closeSync(this.fd);
  }

  private flush(): void {
    this.scheduled = false;
    const records = this.pending;
    this.pending = [];
    let chunk: Uint8Array[] = [];
    let chunkBytes = 0;
    const write = () => {
      if (chunk.length > 0) writeSync(this.fd, chunk.length === 1 ? chunk[0]! : Buffer.concat(chunk));
      this.size += chunkBytes;
      chunk = [];
      chunkBytes = 0;
    };
    try {
      for (const r of records) {
        if (this.size + chunkBytes > 0 && this.size + chunkBytes + r.byteLength > this.maxBytes()) {
          write();
          this.rotate();
        }
        chunk.push(r);
        chunkBytes += r.byteLength;
      }
      write();
    } catch (err) {
      this.onError(`could not write the record file ${this.path}: ${(err as Error).message}`);
    }
  }

  private rotate(): void {
    for (let i = KEEP - 1; i >= 1; i--) {
      try { renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`); } catch { /* not there yet */ }
    }
    // If the rename or the open fails, the open file stays in use (and the error is reported).
    renameSync(this.path, `${this.path}.1`);
    const next = openSync(this.path, "a");
    closeSync(this.fd);
    this.fd = next;
    this.size = 0;
  }
}
