/**
 * Relay benchmark: messages/s and latency from a publisher on a host Switchyard,
 * through a destination (practable access-token handshake) to a relay
 * Switchyard, to a subscriber there; against, in the same run, the publisher
 * connected straight to the relay. Prints the ratio.
 *
 *   npm run bench -- relay [--quick] [--rounds N]
 */
import { join } from "node:path";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { rssBytes, runClient } from "./support/proc.ts";
import { startSwitchyard } from "./support/switchyard-proc.ts";

interface Result { delivered: number; expected: number; seconds: number; perSecond: number; p50ms: number; p99ms: number }
const CLIENT = join(import.meta.dir, "support", "fanout-client.ts");
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const roundsArg = args.indexOf("--rounds");
  const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 3;
  const messages = quick ? 20_000 : 100_000;
  const bytes = 80;
  // Both servers keep up to 16 MiB per subscriber and per destination, so neither drops under a flat-out burst.
  const big = { backpressure_limit_bytes: 16 * 1024 * 1024, relay_buffer_bytes: 16 * 1024 * 1024 };
  const relay = await startSwitchyard(big);
  const host = await startSwitchyard(big);
  try {
    const token = await signStreamToken(relay.secret, { topic: "bench-relayed", scopes: ["read", "write"], ttlSeconds: 3600, audience: relay.url });
    const r = await fetch(`${host.url}/api/destinations`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: "bench", stream: "bench", destination: `${relay.url}/session/bench-relayed`, token }),
    });
    if (!r.ok) throw new Error(`could not add the destination: ${await r.text()}`);
    for (let i = 0; i < 100; i++) {
      const s = (await (await fetch(`${host.url}/api/destinations/bench`)).json()) as { status: { state: string } };
      if (s.status.state === "connected") break;
      await Bun.sleep(50);
    }
    const through = { url: `ws://127.0.0.1:${relay.port}/ws/bench-relayed`, pubUrl: `ws://127.0.0.1:${host.port}/ws/bench` };
    const direct = { url: `ws://127.0.0.1:${relay.port}/ws/bench-direct`, pubUrl: `ws://127.0.0.1:${relay.port}/ws/bench-direct` };
    console.log(`relay benchmark: ${bytes}-byte messages, one publisher, one subscriber, ${rounds} round(s), best kept; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
    const best: Record<string, Result> = {};
    for (let i = 0; i < rounds; i++) {
      for (const [name, t] of (i % 2 === 0 ? [["direct", direct], ["relayed", through]] : [["relayed", through], ["direct", direct]]) as [string, typeof direct][]) {
        const res = await runClient<Result>(CLIENT, { ...t, subs: 1, messages, bytes });
        if (!best[name] || res.perSecond > best[name]!.perSecond) best[name] = res;
      }
    }
    const paced: Record<string, Result> = {};
    for (const [name, t] of [["direct", direct], ["relayed", through]] as [string, typeof direct][]) {
      paced[name] = await runClient<Result>(CLIENT, { ...t, subs: 1, messages: 10_000, bytes, rate: 5_000 });
    }
    const d = best.direct!, rl = best.relayed!;
    console.log("\n| path | delivered/s (flat out) | p50 / p99 ms (flat out) | p50 / p99 ms at 5,000 msg/s | lost |");
    console.log("|---|---|---|---|---|");
    console.log(`| publisher → relay → subscriber (direct) | ${fmt(d.perSecond)} | ${d.p50ms.toFixed(1)} / ${d.p99ms.toFixed(1)} | ${paced.direct!.p50ms.toFixed(2)} / ${paced.direct!.p99ms.toFixed(2)} | ${d.expected - d.delivered} |`);
    console.log(`| publisher → host → destination → relay → subscriber | ${fmt(rl.perSecond)} | ${rl.p50ms.toFixed(1)} / ${rl.p99ms.toFixed(1)} | ${paced.relayed!.p50ms.toFixed(2)} / ${paced.relayed!.p99ms.toFixed(2)} | ${rl.expected - rl.delivered} |`);
    console.log(`\nratio relayed / direct: **${(rl.perSecond / d.perSecond).toFixed(2)}**; RSS host ${(await rssBytes(host.pid) / 1048576).toFixed(1)} MiB, relay ${(await rssBytes(relay.pid) / 1048576).toFixed(1)} MiB`);
  } finally {
    await host.stop();
    await relay.stop();
  }
}
