/**
 * A websocket subscriber that only counts the data frames it receives, parsing
 * frame headers straight off the TCP stream: the cheapest possible reader, so a
 * benchmark measures the server, not the client's message events.
 */
export async function countingSubscriber(port: number, path: string): Promise<{ count(): number; closed(): { code: number; reason: string } | null; close(): void }> {
  let frames = 0;
  let closeFrame: { code: number; reason: string } | null = null;
  let pending = Buffer.alloc(0);
  let upgraded = false;
  let skip = 0; // payload bytes of the current frame still to come
  let ready: () => void;
  const open = new Promise<void>((r) => (ready = r));
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, chunk) {
        let buf = pending.length ? Buffer.concat([pending, chunk]) : Buffer.from(chunk);
        if (!upgraded) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) { pending = buf; return; }
          upgraded = true;
          ready();
          buf = buf.subarray(end + 4);
        }
        let i = 0;
        if (skip > 0) {
          const n = Math.min(skip, buf.length);
          skip -= n;
          i = n;
        }
        while (skip === 0 && buf.length - i >= 2) {
          let len = buf[i + 1]! & 0x7f;
          let head = 2;
          if (len === 126) { if (buf.length - i < 4) break; len = buf.readUInt16BE(i + 2); head = 4; }
          else if (len === 127) { if (buf.length - i < 10) break; len = Number(buf.readBigUInt64BE(i + 2)); head = 10; }
          const op = buf[i]! & 0x0f;
          if (op === 1 || op === 2) frames++;
          const avail = buf.length - i - head;
          if (op === 8 && avail >= len) closeFrame = { code: len >= 2 ? buf.readUInt16BE(i + head) : 1005, reason: buf.subarray(i + head + 2, i + head + len).toString() };
          if (avail >= len) i += head + len;
          else { skip = len - avail; i = buf.length; }
        }
        pending = buf.subarray(i);
      },
    },
  });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await open;
  return { count: () => frames, closed: () => closeFrame, close: () => socket.end() };
}
