import { createWriteStream, mkdirSync, renameSync, statSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";
import type { Message } from "../core/message.ts";

const KEEP = 3;

/**
 * Appends every message a destination sends to its `file`, one per line (binary
 * as base64), buffered, and rotates the file to .1, .2, .3 when it reaches `maxBytes`.
 */
export class Recorder {
  private out: WriteStream;
  private size: number;

  constructor(readonly path: string, private readonly maxBytes: () => number) {
    mkdirSync(dirname(path), { recursive: true });
    try { this.size = statSync(path).size; } catch { this.size = 0; }
    this.out = createWriteStream(path, { flags: "a" });
  }

  write(m: Message): void {
    const line = (typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64")) + "\n";
    const bytes = Buffer.byteLength(line);
    if (this.size > 0 && this.size + bytes > this.maxBytes()) this.rotate();
    this.out.write(line);
    this.size += bytes;
  }

  /** Flushes and closes the file. */
  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve));
  }

  private rotate(): void {
    const old = this.out;
    old.end();
    for (let i = KEEP - 1; i >= 1; i--) {
      try { renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`); } catch { /* not there yet */ }
    }
    renameSync(this.path, `${this.path}.1`);
    this.out = createWriteStream(this.path, { flags: "a" });
    this.size = 0;
  }
}
