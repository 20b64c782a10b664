/**
 * UDP load sender for the UDP benchmark, run as its own process: sends `count`
 * JSON datagrams of about 60 bytes (with seq numbers) to `port`, at `rate` per
 * second or flat out (rate 0). Prints one JSON line: sent, seconds.
 */
const { port, rate, count, stream } = JSON.parse(process.argv[2]!) as { port: number; rate: number; count: number; stream: string };
const socket = await Bun.udpSocket({ connect: { hostname: "127.0.0.1", port } });
const pad = "x".repeat(24);
const packet = (seq: number) => `{"stream":"${stream}","seq":${seq},"v":"${pad}"}`;
const BATCH = 64;
let sent = 0;
const t0 = performance.now();
while (sent < count) {
  if (rate > 0) {
    const due = Math.min(count, Math.floor(((performance.now() - t0) / 1000) * rate));
    if (due <= sent) {
      await Bun.sleep(1);
      continue;
    }
    while (sent < due) {
      const n = Math.min(BATCH, due - sent);
      const batch = Array.from({ length: n }, (_, i) => packet(sent + i));
      sent += socket.sendMany(batch);
    }
  } else {
    const n = Math.min(BATCH, count - sent);
    const batch = Array.from({ length: n }, (_, i) => packet(sent + i));
    sent += socket.sendMany(batch);
  }
}
console.log(JSON.stringify({ sent, seconds: (performance.now() - t0) / 1000 }));
socket.close();
process.exit(0);
export {};
