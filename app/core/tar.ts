/** One file of a tar archive. */
export interface TarFile {
  name: string;
  content: string | Uint8Array;
  /** Unix mode (default 0o600: archives here hold secrets). */
  mode?: number;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

/** A POSIX ustar archive of regular files (names up to 100 bytes), gzipped. */
export function tarGz(files: TarFile[], mtimeSeconds = Math.floor(Date.now() / 1000)): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const f of files) {
    const name = enc.encode(f.name);
    if (name.length === 0 || name.length > 100) throw new Error(`tar: file name ${JSON.stringify(f.name)} must be 1 to 100 bytes`);
    const data = typeof f.content === "string" ? enc.encode(f.content) : f.content;
    const header = new Uint8Array(BLOCK);
    const put = (text: string, offset: number) => header.set(enc.encode(text), offset);
    header.set(name, 0);
    put(octal(f.mode ?? 0o600, 8), 100);
    put(octal(0, 8), 108);
    put(octal(0, 8), 116);
    put(octal(data.length, 12), 124);
    put(octal(mtimeSeconds, 12), 136);
    put("        ", 148); // checksum field counts as spaces while summing
    put("0", 156);
    put("ustar\u000000", 257);
    const sum = header.reduce((a, b) => a + b, 0);
    put(sum.toString(8).padStart(6, "0") + "\0 ", 148);
    parts.push(header, data);
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(2 * BLOCK));
  return Bun.gzipSync(Buffer.concat(parts));
}
