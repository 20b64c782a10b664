/**
 * Load for the soak benchmark, run as its own process so its CPU is not the
 * server's: `streams` streams with `subscribers` websocket readers in all, one
 * websocket publisher per stream sending `rate` messages/s in total, UDP
 * datagrams at `udpRate`/s of which `garbagePercent` are garbage, and one
 * reader that never reads (a raw TCP websocket that stops reading after the
 * handshake). Runs `seconds`, then prints one JSON line of counts.
 */
import { connect as tcpConnect } from "node:net";

const args = JSON.parse(process.argv[2]!) as { port: number; udpPort: number; seconds: number; streams: number; subscribers: number; rate: number; udpRate: number; garbagePercent: number };
const counts = { published: 0, received: 0, udpSent: 0, udpGarbage: 0, unexpectedCloses: [] as string[] };
const names = Array.from({ length: args.streams }, (_, i) => `soak-${i}`);
const open = (url: string) => new Promise<WebSocket>((resolve, reject) => {
  const ws = new WebSocket(url);
  ws.onopen = () => resolve(ws);
  ws.onerror = () => reject(new Error(`could not connect to ${url}`));
});
let ending = false;
const watchClose = (ws: WebSocket, what: string) => {
  ws.onclose = (e) => { if (!ending) counts.unexpectedCloses.push(`${what}: ${e.code} ${e.reason}`); };
};

const subscribers: WebSocket[] = [];
for (let i = 0; i < args.subscribers; i++) {
  const ws = await open(`ws://127.0.0.1:${args.port}/ws/${names[i % names.length]}`);
  ws.onmessage = () => { counts.received++; };
  watchClose(ws, `subscriber ${i}`);
  subscribers.push(ws);
}

// The reader that never reads: handshake, then the socket is paused for good.
const stalled = tcpConnect(args.port, "127.0.0.1");
await new Promise<void>((resolve) => stalled.once("connect", () => resolve()));
stalled.write(`GET /ws/${names[0]} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.from("soak-stalled-key").toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
await new Promise<void>((resolve) => stalled.once("data", () => resolve()));
stalled.pause();
stalled.on("error", () => {});

const publishers: WebSocket[] = [];
for (const name of names) {
  const ws = await open(`ws://127.0.0.1:${args.port}/ws/${name}`);
  watchClose(ws, `publisher ${name}`);
  publishers.push(ws);
}
const udp = await Bun.udpSocket({ connect: { hostname: "127.0.0.1", port: args.udpPort } });

const t0 = performance.now();
const pad = "x".repeat(60);
const GARBAGE = ["not json at all", '{"stream":"bad name with spaces","v":1}', '{"v":"no stream field"}', "[1,2,3]", "\u0000\u0001\u0002binary?", '{"stream":'];
let udpSeq = 0;
while (performance.now() - t0 < args.seconds * 1000) {
  const elapsed = (performance.now() - t0) / 1000;
  const due = Math.floor(elapsed * args.rate);
  while (counts.published < due) {
    const i = counts.published++;
    const ws = publishers[i % publishers.length]!;
    if (ws.readyState === WebSocket.OPEN) ws.send(`{"i":${i},"t":${Date.now()},"p":"${pad}"}`);
  }
  const udpDue = Math.floor(elapsed * args.udpRate);
  const batch: string[] = [];
  while (counts.udpSent + batch.length < udpDue) {
    const n = udpSeq++;
    if ((n * 7919) % 100 < args.garbagePercent) {
      batch.push(GARBAGE[n % GARBAGE.length]!);
      counts.udpGarbage++;
    } else {
      batch.push(`{"stream":"soak-udp","n":${n},"p":"${pad}"}`);
    }
  }
  if (batch.length > 0) counts.udpSent += udp.sendMany(batch);
  await Bun.sleep(10);
}
ending = true;
for (const ws of [...subscribers, ...publishers]) ws.close();
stalled.destroy();
udp.close();
console.log(JSON.stringify(counts));
process.exit(0);
