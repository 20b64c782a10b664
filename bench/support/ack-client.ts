/**
 * A bench client (own process) that publishes `messages` messages and counts
 * only acknowledged ones, then prints one JSON line {acked, seconds, perSecond}.
 *
 *   mode "http-single": `concurrency` loops, one POST per message (2xx after fsync)
 *   mode "http-batch":  `concurrency` loops, NDJSON POSTs of `batch` lines (2xx after fsync)
 *   mode "ws-ack":      `concurrency` websockets with ?ack=1, each keeping up to `window` unacked
 *   mode "jetstream":   `concurrency` NATS connections, async publish keeping up to `window` unacked PubAcks
 */
import { connect as natsConnect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";

interface Args { mode: "http-single" | "http-batch" | "ws-ack" | "jetstream"; url: string; stream: string; messages: number; bytes: number; concurrency: number; batch?: number; window?: number }
const a = JSON.parse(process.argv[2]!) as Args;
const payload = (i: number) => {
  const head = `{"n":${i},"v":"`;
  return head + "x".repeat(Math.max(0, a.bytes - head.length - 2)) + "\"}";
};

let next = 0;
let acked = 0;
const take = (n: number) => {
  const from = next;
  next = Math.min(a.messages, next + n);
  return [from, next] as const;
};

async function httpSingle() {
  const url = `${a.url}/api/streams/${a.stream}/messages`;
  for (;;) {
    const [from, to] = take(1);
    if (from === to) return;
    const r = await fetch(url, { method: "POST", body: payload(from), headers: { "Content-Type": "application/json" } });
    if (r.status !== 200) throw new Error(`POST answered ${r.status}: ${await r.text()}`);
    await r.arrayBuffer();
    acked++;
  }
}

async function httpBatch() {
  const url = `${a.url}/api/streams/${a.stream}/messages`;
  for (;;) {
    const [from, to] = take(a.batch!);
    if (from === to) return;
    let body = "";
    for (let i = from; i < to; i++) body += payload(i) + "\n";
    const r = await fetch(url, { method: "POST", body, headers: { "Content-Type": "application/x-ndjson" } });
    const answer = (await r.json()) as { count: number };
    if (r.status !== 200) throw new Error(`POST answered ${r.status}: ${JSON.stringify(answer)}`);
    acked += answer.count;
  }
}

async function wsAck() {
  const ws = new WebSocket(`${a.url.replace("http", "ws")}/ws/${a.stream}?ack=1`);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const window = a.window!;
  let inFlight = 0;
  let wake: (() => void) | null = null;
  const closed = new Promise<never>((_, reject) => { ws.onclose = (e) => reject(new Error(`websocket closed ${e.code} ${e.reason}`)); });
  closed.catch(() => {});
  ws.onmessage = (e) => {
    const f = JSON.parse(String(e.data)) as { ack?: { count: number } };
    if (!f.ack) throw new Error(`not an ack: ${e.data}`);
    inFlight -= f.ack.count;
    acked += f.ack.count;
    wake?.();
  };
  let mine = 0;
  for (;;) {
    const [from, to] = take(Math.max(0, window - inFlight) || 0);
    for (let i = from; i < to; i++) ws.send(payload(i));
    inFlight += to - from;
    mine += to - from;
    if (from === to && next >= a.messages && inFlight === 0) break;
    await Promise.race([new Promise<void>((r) => (wake = r)), closed]);
  }
  ws.onclose = null;
  ws.close();
  return mine;
}

async function jetStream() {
  const nc = await natsConnect({ servers: a.url });
  const js = jetstream(nc);
  const window = a.window!;
  const encoder = new TextEncoder();
  const pending = new Set<Promise<unknown>>();
  for (;;) {
    const [from, to] = take(Math.max(0, window - pending.size));
    for (let i = from; i < to; i++) {
      const p: Promise<unknown> = js.publish(`${a.stream}.x`, encoder.encode(payload(i))).then(() => { acked++; pending.delete(p); });
      pending.add(p);
    }
    if (pending.size === 0 && next >= a.messages) break;
    await Promise.race(pending);
  }
  await nc.drain();
}

const start = performance.now();
const worker = a.mode === "http-single" ? httpSingle : a.mode === "http-batch" ? httpBatch : a.mode === "ws-ack" ? wsAck : jetStream;
await Promise.all(Array.from({ length: a.concurrency }, () => worker()));
const seconds = (performance.now() - start) / 1000;
if (acked !== a.messages) throw new Error(`acknowledged ${acked} of ${a.messages}`);
console.log(JSON.stringify({ acked, seconds, perSecond: acked / seconds }));
process.exit(0);
