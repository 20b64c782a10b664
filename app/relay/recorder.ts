import { closeSync, fstatSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { Message } from "../core/message.ts";

const KEEP = 3;

/**
 * Appends every message a destination sends to its `file`, one per line (binary
 * as base64), and rotates the file to .1, .2, .3 when it would pass `maxBytes`.
 * Lines are gathered and written once per event-loop turn; a failed write is
 * reported through `onError`, never thrown at the sender.
 */
export class Recorder {
  private fd: number;
  private size: number;
  private pending: string[] = [];
  private scheduled = false;

  constructor(readonly path: string, private readonly maxBytes: () => number, private readonly onError: (message: string) => void = () => {}) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, "a");
    this.size = fstatSync(this.fd).size;
  }

  write(m: Message): void {
    this.pending.push((typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64")) + "\n");
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
    const lines = this.pending;
    this.pending = [];
    let chunk = "";
    let chunkBytes = 0;
    try {
      for (const line of lines) {
        const bytes = Buffer.byteLength(line);
        if (this.size + chunkBytes > 0 && this.size + chunkBytes + bytes > this.maxBytes()) {
          if (chunk) writeSync(this.fd, chunk);
          this.size += chunkBytes;
          chunk = "";
          chunkBytes = 0;
          this.rotate();
        }
        chunk += line;
        chunkBytes += bytes;
      }
      if (chunk) writeSync(this.fd, chunk);
      this.size += chunkBytes;
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
