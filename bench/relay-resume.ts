/**
 * Store-and-forward benchmark: twelve streams (spin30–spin41) at 100 msg/s each
 * on a host Switchyard, each relayed by a `"resume": true` destination through
 * an "uplink" (a TCP proxy in this process) to a relay Switchyard, where a
 * subscriber per stream checks order and counts. The uplink goes down for
 * `--minutes N` (default 10) while publishing goes on, then comes back: the time
 * to drain the backlog, and the latency of a live probe stream (100 msg/s,
 * published only while the uplink is up, so it has no backlog of its own)
 * during the drain, against the same probe in the same run without an outage.
 *
 * With `--uplink-kbps K` the uplink is also thin: host → relay bytes go through
 * one FIFO drained at K kilobytes a second with a 256 KiB buffer (a modem's queue),
 * so a catch-up that fills the link delays live traffic behind it; `--bytes B`
 * sets relay_catchup_bytes_per_second (`--rate 0 --bytes 0`: no limit).
 *
 *   npm run bench -- resume [--minutes N] [--baseline-seconds S] [--rate MSGS_PER_S] [--bytes B] [--uplink-kbps K]
 */
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { startSwitchyard } from "./support/switchyard-proc.ts";
import { rssBytes } from "./support/proc.ts";

const STREAMS = Array.from({ length: 12 }, (_, i) => `spin${30 + i}`);
const PROBE = "probe";
const PER_SECOND = 100;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

/** Most bytes a thin uplink holds queued (a modem's buffer); past it the senders wait. */
const UPLINK_QUEUE_BYTES = 256 * 1024;

/**
 * The uplink: a TCP proxy to the relay that can be cut (every connection
 * dropped, new ones refused) and restored. With a rate, host → relay bytes of
 * every connection share one FIFO drained at that rate (a bottleneck link).
 */
class Uplink {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly queue: { to: Socket; chunk: Buffer }[] = [];
  private queued = 0;
  private readonly paused = new Set<Socket>();
  private timer: ReturnType<typeof setInterval> | null = null;
  constructor(readonly port: number, private readonly target: number, private readonly bytesPerSecond = 0) {
    if (bytesPerSecond > 0) this.timer = setInterval(() => this.drain(5), 5);
  }

  private drain(ms: number): void {
    let budget = (this.bytesPerSecond * ms) / 1000 + this.carry;
    while (this.queue.length > 0 && budget >= this.queue[0]!.chunk.length) {
      const { to, chunk } = this.queue.shift()!;
      budget -= chunk.length;
      this.queued -= chunk.length;
      if (!to.destroyed) to.write(chunk);
    }
    this.carry = this.queue.length > 0 ? budget : 0;
    if (this.queued < UPLINK_QUEUE_BYTES / 2) for (const s of this.paused) s.resume();
    if (this.queued < UPLINK_QUEUE_BYTES / 2) this.paused.clear();
  }
  private carry = 0;

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async up(): Promise<void> {
    const server = createServer((client) => {
      const remote = tcpConnect(this.target, "127.0.0.1");
      for (const s of [client, remote]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      if (this.bytesPerSecond > 0) {
        client.on("data", (chunk: Buffer) => {
          // Split big chunks so that one connection's burst does not hold the link in one piece.
          for (let o = 0; o < chunk.length; o += 4096) {
            const part = chunk.subarray(o, o + 4096);
            this.queue.push({ to: remote, chunk: part });
            this.queued += part.length;
          }
          if (this.queued >= UPLINK_QUEUE_BYTES) {
            client.pause();
            this.paused.add(client);
          }
        });
      } else {
        client.pipe(remote);
      }
      remote.pipe(client);
      client.on("close", () => remote.destroy());
      remote.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", resolve));
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.queue.length = 0;
    this.queued = 0;
    this.paused.clear();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

export async function run(args: string[]) {
  const minutes = arg(args, "--minutes", 10);
  const baselineSeconds = arg(args, "--baseline-seconds", 60);
  const catchupRate = arg(args, "--rate", 5000);
  const catchupBytes = arg(args, "--bytes", 1024 * 1024);
  const uplinkKbps = arg(args, "--uplink-kbps", 0);
  const relay = await startSwitchyard({ backpressure_limit_bytes: 16 * 1024 * 1024 });
  const host = await startSwitchyard({ relay_catchup_messages_per_second: catchupRate, relay_catchup_bytes_per_second: catchupBytes });
  const uplinkPort = await new Promise<number>((resolve) => { const s = createServer(); s.listen(0, "127.0.0.1", () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); }); });
  const uplink = new Uplink(uplinkPort, relay.port, uplinkKbps * 1000);
  await uplink.up();
  const sockets: WebSocket[] = [];
  try {
    for (const stream of [...STREAMS, PROBE]) {
      const r = await fetch(`${host.url}/api/destinations`, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ id: stream, stream, destination: `ws://127.0.0.1:${uplinkPort}/ws/${stream}-log`, token: "", resume: true }) });
      if (!r.ok) throw new Error(`could not add the destination: ${await r.text()}`);
    }
    const statuses = async () => Object.values((await (await fetch(`${host.url}/api/destinations/all`)).json()) as Record<string, { id: string; status: { state: string; resume: { backlog_messages: number; catching_up: boolean; mode: string | null } } }>);
    for (let i = 0; (await statuses()).some((d) => d.status.resume.mode !== "switchyard"); i++) {
      if (i > 1200) throw new Error("the destinations did not connect");
      await Bun.sleep(50);
    }

    // Subscribers on the relay: per stream, the last number seen, and what was out of order or twice.
    const seen = new Map<string, { last: number; count: number; bad: number }>();
    const probeLatency: { at: number; ms: number }[] = [];
    const spinLatency: { at: number; ms: number }[] = [];
    for (const stream of [...STREAMS, PROBE]) {
      const ws = new WebSocket(`ws://127.0.0.1:${relay.port}/ws/${stream}-log`);
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
      const s = { last: 0, count: 0, bad: 0 };
      seen.set(stream, s);
      ws.onmessage = (e) => {
        const now = performance.timeOrigin + performance.now();
        const m = JSON.parse(e.data as string) as { n: number; t: number };
        s.count++;
        if (m.n !== s.last + 1) s.bad++;
        s.last = m.n;
        (stream === PROBE ? probeLatency : spinLatency).push({ at: now, ms: now - m.t });
      };
      sockets.push(ws);
    }

    // Publishers on the host: 100 msg/s per stream, paced by the clock; the probe only while `probing`.
    const pubs = new Map<string, WebSocket>();
    for (const stream of [...STREAMS, PROBE]) {
      const ws = new WebSocket(`ws://127.0.0.1:${host.port}/ws/${stream}`);
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
      pubs.set(stream, ws);
      sockets.push(ws);
    }
    const sent = new Map<string, number>([...STREAMS, PROBE].map((s) => [s, 0]));
    let probing = true;
    let probeStart = performance.now();
    let probeSentBefore = 0;
    const started = performance.now();
    const pace = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * PER_SECOND);
      const t = performance.timeOrigin + performance.now();
      for (const stream of STREAMS) {
        const ws = pubs.get(stream)!;
        for (let n = sent.get(stream)!; n < due; n++) ws.send(JSON.stringify({ n: n + 1, t, pad: "x".repeat(40) }));
        sent.set(stream, Math.max(due, sent.get(stream)!));
      }
      if (probing) {
        const pdue = probeSentBefore + Math.floor(((performance.now() - probeStart) / 1000) * PER_SECOND);
        for (let n = sent.get(PROBE)!; n < pdue; n++) pubs.get(PROBE)!.send(JSON.stringify({ n: n + 1, t, pad: "x".repeat(40) }));
        sent.set(PROBE, Math.max(pdue, sent.get(PROBE)!));
      }
    }, 10);

    console.log(`store-and-forward benchmark: 12 streams x ${PER_SECOND} msg/s, ~90-byte JSON messages, uplink down ${minutes} min${uplinkKbps ? `, uplink ${fmt(uplinkKbps)} kB/s (one FIFO, 256 KiB queue)` : ""}, catch-up limits ${catchupRate ? fmt(catchupRate) : "none"} msg/s and ${catchupBytes ? fmt(catchupBytes) : "no"} bytes/s; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
    // 1. Baseline: no outage.
    const b0 = performance.timeOrigin + performance.now();
    await Bun.sleep(baselineSeconds * 1000);
    const b1 = performance.timeOrigin + performance.now();
    const base = probeLatency.filter((l) => l.at >= b0 && l.at < b1).map((l) => l.ms);
    const baseSpin = spinLatency.filter((l) => l.at >= b0 && l.at < b1).map((l) => l.ms);

    // 2. The outage: the probe pauses (it has nothing to catch up), the twelve keep publishing into the log.
    probing = false;
    probeSentBefore = sent.get(PROBE)!;
    await Bun.sleep(500);
    await uplink.down();
    const downAt = performance.now();
    console.log(`uplink down at ${new Date().toISOString()}`);
    while (performance.now() - downAt < minutes * 60_000) {
      await Bun.sleep(Math.min(30_000, minutes * 60_000 - (performance.now() - downAt)));
      const backlog = (await statuses()).reduce((n, d) => n + d.status.resume.backlog_messages, 0);
      console.log(`  ${((performance.now() - downAt) / 1000).toFixed(0)} s down: backlog ${fmt(backlog)} messages; host RSS ${(await rssBytes(host.pid) / 1048576).toFixed(1)} MiB`);
    }
    const backlogAtReturn = (await statuses()).reduce((n, d) => n + d.status.resume.backlog_messages, 0);
    const hostRssDown = await rssBytes(host.pid);
    await uplink.up();
    const upAt = performance.now();
    let d0 = 0;
    let firstAt = 0;
    let connectedAt = 0;
    for (;;) {
      const st = await statuses();
      // The probe starts again once its own destination is back (before that it would only measure the reconnect backoff).
      if (!probing && st.find((d) => d.id === PROBE)!.status.resume.mode === "switchyard") {
        probing = true;
        probeStart = performance.now();
        d0 = performance.timeOrigin + probeStart;
      }
      if (!firstAt && st.some((d) => d.id !== PROBE && d.status.resume.mode === "switchyard")) firstAt = performance.now();
      if (!connectedAt && st.filter((d) => d.id !== PROBE).every((d) => d.status.resume.mode === "switchyard")) connectedAt = performance.now();
      if (connectedAt && st.every((d) => d.status.resume.backlog_messages < PER_SECOND && !d.status.resume.catching_up)) break;
      await Bun.sleep(250);
    }
    const drainedAt = performance.now();
    const d1 = performance.timeOrigin + drainedAt;
    const hostRssDrain = await rssBytes(host.pid);
    await Bun.sleep(5000);
    clearInterval(pace);
    await Bun.sleep(3000);
    const during = probeLatency.filter((l) => l.at >= d0 && l.at < d1).map((l) => l.ms);

    let totalSent = 0, totalSeen = 0, bad = 0;
    for (const stream of STREAMS) {
      totalSent += sent.get(stream)!;
      totalSeen += seen.get(stream)!.count;
      bad += seen.get(stream)!.bad;
    }
    const drainS = (drainedAt - upAt) / 1000;
    const firstS = (firstAt - upAt) / 1000;
    const reconnectS = (connectedAt - upAt) / 1000;
    const arrived = (drainedAt - firstAt) / 1000 * 12 * PER_SECOND;
    console.log(`\nbacklog when the uplink came back: ${fmt(backlogAtReturn)} messages; the first of the twelve destinations was back after ${firstS.toFixed(1)} s and all twelve after ${reconnectS.toFixed(1)} s (reconnect backoff: up to 10 s, jittered); all backlogs drained ${drainS.toFixed(1)} s after the uplink came back, ${(drainS - firstS).toFixed(1)} s after the first reconnection (${fmt((backlogAtReturn + arrived) / Math.max(0.001, drainS - firstS))} msg/s sent: the backlog plus the ${fmt(12 * PER_SECOND)} msg/s that kept arriving)`);
    console.log(`the twelve streams on the relay: ${fmt(totalSeen)} of ${fmt(totalSent)} messages, ${bad} out of order or twice`);
    console.log(`host RSS: ${(hostRssDown / 1048576).toFixed(1)} MiB at the end of the outage, ${(hostRssDrain / 1048576).toFixed(1)} MiB at the end of the drain`);
    console.log("\n| live probe stream (100 msg/s), latency host → relay subscriber | messages | p50 ms | p99 ms | max ms |");
    console.log("|---|---|---|---|---|");
    console.log(`| no outage (baseline, ${baselineSeconds} s, the twelve streams flowing live) | ${fmt(base.length)} | ${quantile(base, 0.5).toFixed(1)} | ${quantile(base, 0.99).toFixed(1)} | ${Math.max(...base).toFixed(1)} |`);
    console.log(`| during the drain (${drainS.toFixed(0)} s) | ${fmt(during.length)} | ${quantile(during, 0.5).toFixed(1)} | ${quantile(during, 0.99).toFixed(1)} | ${Math.max(...during).toFixed(1)} |`);
    console.log(`\nratio p99 during the drain / baseline: **${(quantile(during, 0.99) / quantile(base, 0.99)).toFixed(2)}**; the twelve streams' own latency in the baseline: p50 ${quantile(baseSpin, 0.5).toFixed(1)} ms, p99 ${quantile(baseSpin, 0.99).toFixed(1)} ms`);
  } finally {
    for (const ws of sockets) ws.close();
    await uplink.down();
    uplink.stop();
    await host.stop();
    await relay.stop();
  }
}
