/**
 * Load client for the hub benchmark, run as its own process: opens `subs`
 * subscribers and one publisher on a stream, sends `messages` messages of
 * `bytes` bytes (flat out, or at `rate` per second) on `pubUrl` (default: the
 * same URL), and prints one JSON line:
 * delivered, seconds, delivered per second, and publish-to-deliver latency
 * percentiles (publisher and subscribers share this process's clock).
 */
const opts = JSON.parse(process.argv[2]!) as { url: string; pubUrl?: string; subs: number; messages: number; bytes: number; rate?: number; timeoutMs?: number; ca?: string };
const { url, subs, messages, bytes } = opts;
const sampleEvery = Math.max(1, Math.floor((subs * messages) / 200_000));
const latencies: number[] = [];
let delivered = 0;
let lastAt = 0;
const expected = subs * messages;
let finish: () => void;
const allIn = new Promise<void>((r) => (finish = r));

async function open(target = url): Promise<WebSocket> {
  // wss:// (bench hub --tls): the server's CA, so the client verifies as a real one does.
  const ws = opts.ca ? new WebSocket(target, { tls: { ca: opts.ca } } as unknown as string[]) : new WebSocket(target);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`));
  });
  return ws;
}

for (let i = 0; i < subs; i += 50) {
  const batch = await Promise.all(Array.from({ length: Math.min(50, subs - i) }, () => open()));
  for (const ws of batch) {
    let n = 0;
    ws.onmessage = (e) => {
      n++;
      delivered++;
      if (n % sampleEvery === 0) {
        const s = e.data as string;
        latencies.push(performance.now() - Number(s.slice(s.indexOf(" ") + 1, s.indexOf("|"))));
      }
      if (delivered === expected) { lastAt = performance.now(); finish(); }
    };
  }
}
const pub = await open(opts.pubUrl ?? url);
await Bun.sleep(300);
const pad = "x".repeat(bytes);
const t0 = performance.now();
for (let i = 0; i < messages; i++) {
  const head = `${i} ${performance.now().toFixed(3)}|`;
  pub.send(head + pad.slice(head.length));
  if (opts.rate) {
    const due = t0 + ((i + 1) * 1000) / opts.rate;
    const wait = due - performance.now();
    if (wait > 1) await Bun.sleep(wait);
  } else if (i % 200 === 199) {
    await Bun.sleep(0); // let the socket flush and subscribers read, as a real publisher's loop would
  }
}
await Promise.race([allIn, Bun.sleep(opts.timeoutMs ?? 120_000)]);
const end = lastAt || performance.now();
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! : NaN;
console.log(JSON.stringify({
  delivered, expected, seconds: (end - t0) / 1000, perSecond: delivered / ((end - t0) / 1000),
  p50ms: pct(0.5), p99ms: pct(0.99), samples: latencies.length,
}));
process.exit(0);
export {};
