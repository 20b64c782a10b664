import net from "node:net";

/**
 * A websocket client on a raw TCP socket, so a test can stop reading (a stalled
 * reader) or stay silent (no pongs), which browser-style clients cannot do.
 */
export class RawWebSocket {
  private buf = Buffer.alloc(0);
  private constructor(readonly socket: net.Socket) {}

  /** Connects and completes the upgrade handshake for `path`. */
  static async open(port: number, path: string): Promise<RawWebSocket> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => { socket.once("connect", resolve); socket.once("error", reject); });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    const raw = new RawWebSocket(socket);
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        raw.buf = Buffer.concat([raw.buf, d]);
        const end = raw.buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = raw.buf.subarray(0, end).toString();
        raw.buf = raw.buf.subarray(end + 4);
        socket.off("data", onData);
        if (!head.startsWith("HTTP/1.1 101")) reject(new Error(`upgrade refused: ${head.split("\r\n")[0]}`));
        else resolve();
      };
      socket.on("data", onData);
    });
    return raw;
  }

  /** Stops reading: the server's writes pile up in its buffers. */
  stall(): void {
    this.socket.pause();
  }

  /**
   * Reads frames until a close frame arrives (or `ms` pass); returns the number of
   * data frames seen and the close code and reason.
   */
  async readUntilClose(ms = 20_000): Promise<{ frames: number; code?: number; reason?: string }> {
    let frames = 0;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ frames }), ms);
      const parse = () => {
        while (this.buf.length >= 2) {
          const op = this.buf[0]! & 0x0f;
          let len = this.buf[1]! & 0x7f;
          let off = 2;
          if (len === 126) { if (this.buf.length < 4) return; len = this.buf.readUInt16BE(2); off = 4; }
          else if (len === 127) { if (this.buf.length < 10) return; len = Number(this.buf.readBigUInt64BE(2)); off = 10; }
          if (this.buf.length < off + len) return;
          const payload = this.buf.subarray(off, off + len);
          this.buf = this.buf.subarray(off + len);
          if (op === 0x8) {
            clearTimeout(timer);
            this.socket.off("data", onData);
            resolve({ frames, code: payload.length >= 2 ? payload.readUInt16BE(0) : undefined, reason: payload.subarray(2).toString() });
            return;
          }
          if (op === 0x1 || op === 0x2) frames++;
        }
      };
      const onData = (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); parse(); };
      this.socket.on("data", onData);
      this.socket.once("close", () => { clearTimeout(timer); resolve({ frames }); });
      this.socket.resume();
      parse();
    });
  }

  /** Resolves when the server closes the TCP connection. */
  ended(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once("close", () => resolve());
      this.socket.resume();
      this.socket.on("data", () => {});
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
