/**
 * Load publisher, run as its own process: sends `messages` messages of `bytes`
 * bytes over one websocket as fast as it can, then prints the seconds it took.
 */
const { url, messages, bytes } = JSON.parse(process.argv[2]!) as { url: string; messages: number; bytes: number };
const ws = new WebSocket(url);
await new Promise<void>((resolve, reject) => { ws.onopen = () => resolve(); ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`)); });
const pad = "x".repeat(bytes);
const t0 = performance.now();
for (let i = 0; i < messages; i++) {
  const head = `{"seq":${i},"v":"`;
  ws.send(head + pad.slice(head.length + 2) + '"}');
  if (i % 500 === 499) await Bun.sleep(0);
}
while (ws.bufferedAmount > 0) await Bun.sleep(1);
console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000 }));
ws.close();
process.exit(0);
export {};
