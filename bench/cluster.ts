/**
 * Cluster benchmark: fan-out across nodes through NATS (publisher on node A,
 * subscribers on node B, each node on its own nats-server of a two-server
 * cluster) against, in the same run, single-node fan-out (publisher and
 * subscribers on B). A steady moderate rate, so latency means something:
 * delivered/s, p50/p99 publish-to-deliver latency, the added latency of the
 * NATS hop, the ratio, and the CPU each process spent per message.
 *
 *   npm run bench -- cluster [--quick] [--rate N] [--subs N]
 */
import { join } from "node:path";
import { cpuSeconds, rssBytes, runClient, freeTcpPort } from "./support/proc.ts";
import { startSwitchyard, type SwitchyardProcess } from "./support/switchyard-proc.ts";

interface Result { delivered: number; expected: number; seconds: number; perSecond: number; p50ms: number; p99ms: number }
const CLIENT = join(import.meta.dir, "support", "fanout-client.ts");
const NATS_SERVER = "/usr/sbin/nats-server";
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/** Two clustered nats-servers on loopback. */
async function natsPair() {
  const ports = [0, 1].map(() => ({ client: freeTcpPort(), cluster: freeTcpPort(), monitor: freeTcpPort() }));
  const procs = ports.map((p, i) => Bun.spawn([NATS_SERVER, "-a", "127.0.0.1", "-p", String(p.client), "-m", String(p.monitor), "--cluster_name", "bench",
    "--cluster", `nats://127.0.0.1:${p.cluster}`, "--routes", `nats://127.0.0.1:${ports[1 - i]!.cluster}`], { stdout: "ignore", stderr: "ignore" }));
  for (const p of ports) {
    for (let i = 0; ; i++) {
      const up = await fetch(`http://127.0.0.1:${p.monitor}/routez`).then((r) => r.json() as Promise<{ num_routes: number }>).catch(() => null);
      if (up && up.num_routes >= 1) break;
      if (i > 300) throw new Error("nats-server did not come up");
      await Bun.sleep(50);
    }
  }
  return { urls: ports.map((p) => `nats://127.0.0.1:${p.client}`), pids: procs.map((p) => p.pid), stop: async () => { for (const p of procs) { p.kill(); await p.exited; } } };
}

/** Holds one subscriber open on B's stream and sends probes from A until it hears one: B's interest has reached A's server. */
async function warm(a: SwitchyardProcess, b: SwitchyardProcess, stream: string): Promise<WebSocket> {
  const sub = new WebSocket(`ws://127.0.0.1:${b.port}/ws/${stream}`);
  const pub = new WebSocket(`ws://127.0.0.1:${a.port}/ws/${stream}`);
  await Promise.all([sub, pub].map((s) => new Promise((r) => (s.onopen = r))));
  let heard = false;
  sub.onmessage = () => { heard = true; };
  for (let i = 0; !heard; i++) {
    if (i > 300) throw new Error("no cross-node delivery after 30 s");
    pub.send("warm 0|");
    await Bun.sleep(100);
  }
  sub.onmessage = null;
  pub.close();
  return sub;
}

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const arg = (name: string, fallback: number) => (args.indexOf(name) >= 0 ? Number(args[args.indexOf(name) + 1]) : fallback);
  const rate = arg("--rate", 2000);
  const subs = arg("--subs", 10);
  const messages = quick ? rate * 3 : rate * 10;
  const bytes = 80;
  const nats = await natsPair();
  const big = { backpressure_limit_bytes: 16 * 1024 * 1024 };
  const a = await startSwitchyard(big, 0, undefined, ["--nats", nats.urls[0]!, "--node-id", "a"]);
  const b = await startSwitchyard(big, 0, undefined, ["--nats", nats.urls[1]!, "--node-id", "b"]);
  try {
    const holdCross = await warm(a, b, "bench-cross");
    // The same idle extra subscriber on the single-node stream, so both runs fan out to subs + 1.
    const holdLocal = new WebSocket(`ws://127.0.0.1:${b.port}/ws/bench-local`);
    await new Promise((r) => (holdLocal.onopen = r));
    console.log(`cluster benchmark: ${bytes}-byte messages at ${fmt(rate)}/s for ${messages / rate} s, ${subs} subscribers; two nats-servers (routes); Bun ${Bun.version}, nats-server ${(await new Response(Bun.spawn([NATS_SERVER, "--version"]).stdout).text()).trim()}, ${navigator.hardwareConcurrency} cores`);
    const pids = { a: a.pid, b: b.pid, natsA: nats.pids[0]!, natsB: nats.pids[1]! };
    const cpu = async () => Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([k, p]) => [k, await cpuSeconds(p)] as const)));
    const runs: Record<string, { res: Result; cpu: Record<string, number> }> = {};
    for (const [name, t] of [
      ["single node (publisher and subscribers on B)", { url: `ws://127.0.0.1:${b.port}/ws/bench-local` }],
      ["across nodes (publisher on A, subscribers on B)", { url: `ws://127.0.0.1:${b.port}/ws/bench-cross`, pubUrl: `ws://127.0.0.1:${a.port}/ws/bench-cross` }],
    ] as const) {
      const before = await cpu();
      const res = await runClient<Result>(CLIENT, { ...t, subs, messages, bytes, rate, timeoutMs: 60_000 });
      const after = await cpu();
      runs[name] = { res, cpu: Object.fromEntries(Object.keys(pids).map((k) => [k, after[k]! - before[k]!])) };
    }
    const [single, cross] = Object.values(runs) as [{ res: Result; cpu: Record<string, number> }, { res: Result; cpu: Record<string, number> }];
    console.log(`\n| path | delivered/s | p50 / p99 ms | lost | CPU ms per 1,000 messages: node A / node B / nats A / nats B |`);
    console.log("|---|---|---|---|---|");
    for (const [name, r] of Object.entries(runs)) {
      const per = (k: string) => ((r.cpu[k]! * 1000) / (messages / 1000)).toFixed(1);
      console.log(`| ${name} | ${fmt(r.res.perSecond)} | ${r.res.p50ms.toFixed(2)} / ${r.res.p99ms.toFixed(2)} | ${r.res.expected - r.res.delivered} | ${per("a")} / ${per("b")} / ${per("natsA")} / ${per("natsB")} |`);
    }
    console.log(`\nadded latency of the NATS hop: p50 +${(cross.res.p50ms - single.res.p50ms).toFixed(2)} ms, p99 +${(cross.res.p99ms - single.res.p99ms).toFixed(2)} ms; ratio delivered/s across / single: **${(cross.res.perSecond / single.res.perSecond).toFixed(2)}**`);
    console.log(`RSS node A ${(await rssBytes(a.pid) / 1048576).toFixed(1)} MiB, node B ${(await rssBytes(b.pid) / 1048576).toFixed(1)} MiB`);
    holdCross.close();
    holdLocal.close();
  } finally {
    await a.stop();
    await b.stop();
    await nats.stop();
  }
}
