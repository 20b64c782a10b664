import { readFileSync } from "node:fs";
import net from "node:net";
import { waitFor } from "./server.ts";
import { MAIN } from "./cli.ts";

/** An HTTP answer read off a raw socket: the status line's code, the head and the body as text. */
export interface RawAnswer {
  status: number;
  head: string;
  body: string;
  /** Everything the server sent (more than one answer, if it sent more). */
  raw: string;
}

function parseAnswer(raw: string): RawAnswer {
  const end = raw.indexOf("\r\n\r\n");
  const head = end < 0 ? raw : raw.slice(0, end);
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0), head, body: end < 0 ? "" : raw.slice(end + 4), raw };
}

/** True once `raw` holds a whole answer: a 101's head, or a head and the Content-Length bytes it announced. */
function answerComplete(raw: string): boolean {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = raw.slice(0, end);
  if (/^HTTP\/1\.1 101/.test(head)) return true;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  return length !== null && raw.length - end - 4 >= Number(length[1]);
}

/**
 * Sends `request` as is (no URL or header normalising, unlike fetch) and reads
 * one whole answer, until the server closes, or until `ms` pass.
 */
export function rawRequest(port: number, request: string | Uint8Array, ms = 10_000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    const parts: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(parseAnswer(Buffer.concat(parts).toString("latin1")));
    };
    const timer = setTimeout(done, ms);
    s.on("data", (d: Buffer) => {
      parts.push(d);
      if (answerComplete(Buffer.concat(parts).toString("latin1"))) done();
    });
    s.on("close", done);
    s.on("error", () => {});
    s.write(request);
  });
}

/**
 * Streams a `total`-byte body behind `head` (Content-Length or chunked, as the
 * head says), 64 KiB at a time with backpressure, never holding it whole. After
 * the head and the first `pauseAfter` bytes it waits up to `answerMs` for an early answer
 * (a server that refuses must be seen to refuse before the rest arrives: a
 * close while data is still coming in resets the connection and loses the
 * answer), then sends the rest until done or the server closes. Returns the
 * answer and how many body bytes went out.
 */
export function streamBody(port: number, head: string, total: number, chunked: boolean, opts: { pauseAfter?: number; answerMs?: number } = {}): Promise<RawAnswer & { sent: number }> {
  const { pauseAfter = 64 * 1024, answerMs = 5_000 } = opts;
  const ms = 120_000;
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    const parts: Buffer[] = [];
    let sent = 0;
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ ...parseAnswer(Buffer.concat(parts).toString("latin1")), sent });
    };
    const timer = setTimeout(done, ms);
    s.on("close", done);
    s.on("error", () => {});
    const chunk = Buffer.alloc(64 * 1024, "a");
    const frame = chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from("\r\n")]) : chunk;
    const pump = (upTo = total) => {
      while (sent < Math.min(upTo, total) && !s.destroyed) {
        sent += chunk.length;
        if (!s.write(frame)) return void s.once("drain", () => pump(upTo));
      }
      if (upTo < total) return;
      if (!s.destroyed && chunked) s.write("0\r\n\r\n");
    };
    let early: ReturnType<typeof setTimeout> | undefined;
    s.on("data", (d: Buffer) => {
      parts.push(d);
      if (early) {
        clearTimeout(early);
        early = undefined;
        pump();
      }
    });
    s.once("connect", () => {
      s.write(head);
      pump(pauseAfter);
      early = setTimeout(() => {
        early = undefined;
        pump();
      }, answerMs);
    });
  });
}

/** A `switchyard serve` subprocess whose memory a test can watch. */
export interface ServeProcess {
  port: number;
  udpPort: number;
  pid: number;
  log(): string;
  /** Resident memory of the server process now, in bytes (from /proc). */
  rss(): number;
  stop(): Promise<void>;
}

/** Resident memory of process `pid` in bytes, from /proc/PID/status. */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Starts `switchyard serve` in its own process (a shell sets `umask` first, so a
 * test sees what a loose umask would make) on free ports, and waits until it
 * listens. The source runs, or the binary named by SWITCHYARD_TEST_BINARY.
 */
export async function startServeProcess(dataDir: string, opts: { umask?: string; udpPort?: number; logLevel?: string } = {}): Promise<ServeProcess> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHYARD_")));
  // SWITCHYARD_TEST_BINARY runs these tests against a compiled binary instead of the source.
  const program = process.env.SWITCHYARD_TEST_BINARY ? [process.env.SWITCHYARD_TEST_BINARY] : [process.execPath, MAIN];
  const args = [...program, "serve", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", "0", "--udp-port", String(opts.udpPort ?? 0), "--log-level", opts.logLevel ?? "info"];
  const quoted = args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const p = Bun.spawn(["sh", "-c", `umask ${opts.umask ?? "022"}; exec ${quoted}`], { env: clean, stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  let log = "";
  void (async () => { for await (const c of p.stderr) log += new TextDecoder().decode(c); })();
  await waitFor(() => /http=http:\/\/127\.0\.0\.1:\d+/.test(log) || p.exitCode !== null, "the server to listen", 20_000);
  if (p.exitCode !== null) throw new Error(`serve exited ${p.exitCode}: ${log}`);
  const port = Number(/http=http:\/\/127\.0\.0\.1:(\d+)/.exec(log)![1]);
  return {
    port, udpPort: opts.udpPort ?? 0, pid: p.pid, log: () => log, rss: () => rssOf(p.pid),
    async stop() {
      p.kill("SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
      await p.exited;
      clearTimeout(t);
    },
  };
}
