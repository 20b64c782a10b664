/**
 * Connection-rate client for `bench hub --tls`, run as its own process: opens
 * `count` websockets to `url`, `concurrency` at a time, each a new TCP (and, for
 * wss://, TLS) connection that is closed once open; prints one JSON line with
 * connections per second and the p50/p99 time to open.
 */
const opts = JSON.parse(process.argv[2]!) as { url: string; count: number; concurrency: number; ca?: string };
const times: number[] = [];
let next = 0;
let failed = 0;

async function one(): Promise<void> {
  const t = performance.now();
  const ws = opts.ca ? new WebSocket(opts.url, { tls: { ca: opts.ca } } as unknown as string[]) : new WebSocket(opts.url);
  await new Promise<void>((resolve) => {
    ws.onopen = () => {
      times.push(performance.now() - t);
      ws.close();
    };
    ws.onclose = () => resolve();
    ws.onerror = () => failed++;
  });
}

const t0 = performance.now();
await Promise.all(Array.from({ length: opts.concurrency }, async () => {
  while (next < opts.count) {
    next++;
    await one();
  }
}));
const seconds = (performance.now() - t0) / 1000;
times.sort((a, b) => a - b);
const pct = (p: number) => (times.length ? times[Math.min(times.length - 1, Math.floor(p * times.length))]! : NaN);
console.log(JSON.stringify({ opened: times.length, failed, seconds, perSecond: times.length / seconds, p50ms: pct(0.5), p99ms: pct(0.99) }));
process.exit(0);
export {};
