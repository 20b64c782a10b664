/**
 * Load publisher, run as its own process: sends `messages` messages of `bytes`
 * bytes over one websocket as fast as it can (or at `rate` messages per
 * second), then prints the seconds it took.
 */
const { url, messages, bytes, rate } = JSON.parse(process.argv[2]!) as { url: string; messages: number; bytes: number; rate?: number };
const ws = new WebSocket(url);
await new Promise<void>((resolve, reject) => { ws.onopen = () => resolve(); ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`)); });
const pad = "x".repeat(bytes);
const t0 = performance.now();
for (let i = 0; i < messages; i++) {
  const head = `{"seq":${i},"v":"`;
  ws.send(head + pad.slice(head.length + 2) + '"}');
  if (rate) {
    // Paced: never ahead of `rate` messages per second since the start.
    if (i % 100 === 99) while (i + 1 > ((performance.now() - t0) / 1000) * rate) await Bun.sleep(1);
  } else if (i % 500 === 499) await Bun.sleep(0);
}
while (ws.bufferedAmount > 0) await Bun.sleep(1);
console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000 }));
ws.close();
process.exit(0);
export {};
