/**
 * Hub fan-out benchmark: subscribers x messages on one stream, delivered
 * messages per second and publish-to-deliver latency, for Switchyard (`serve`,
 * with stats, access policy `token` and a token on every client) and, in the same
 * run, a bare Bun.serve pub/sub server doing the same fan-out. Prints the ratio.
 *
 *   npm run bench -- hub [--quick] [--rounds N]
 *   npm run bench -- hub --tls [--quick] [--rounds N]   (wss:// against ws://, see hub-tls.ts)
 */
import { join } from "node:path";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { rssBytes, runClient, waitForOutput } from "./support/proc.ts";
import { startSwitchyard } from "./support/switchyard-proc.ts";

interface Result { delivered: number; expected: number; seconds: number; perSecond: number; p50ms: number; p99ms: number }

const CLIENT = join(import.meta.dir, "support", "fanout-client.ts");

/** Switchyard with access policy `token` and a token for every client; its backpressure limit set to Bun's default (16 MiB) so both servers face the same per-socket limit. */
async function startHubUnderTest() {
  const sy = await startSwitchyard({ access: "token", backpressure_limit_bytes: 16 * 1024 * 1024 });
  const token = await signStreamToken(sy.secret, { topic: "bench", scopes: ["read", "write"], ttlSeconds: 3600 });
  return { pid: sy.pid, url: `ws://127.0.0.1:${sy.port}/ws/bench?token=${token}`, stop: sy.stop };
}

async function startBare() {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "support", "bare-pubsub.ts")], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const port = await waitForOutput(proc, /^(\d+)$/m);
  return { pid: proc.pid, url: `ws://127.0.0.1:${port}/ws/bench`, stop: async () => { proc.kill("SIGTERM"); await proc.exited; } };
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;

export async function run(args: string[]) {
  if (args.includes("--tls")) return (await import("./hub-tls.ts")).run(args);
  const quick = args.includes("--quick");
  const roundsArg = args.indexOf("--rounds");
  const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 3;
  const scenarios = quick
    ? [{ subs: 10, messages: 20_000 }, { subs: 100, messages: 4_000 }]
    : [{ subs: 10, messages: 100_000 }, { subs: 100, messages: 20_000 }, { subs: 1000, messages: 2_000 }];
  const bytes = 80;

  const sy = await startHubUnderTest();
  const bare = await startBare();
  await Bun.sleep(500);
  const idle = { switchyard: await rssBytes(sy.pid), bare: await rssBytes(bare.pid) };
  console.log(`hub benchmark: ${bytes}-byte messages, one publisher, ${rounds} round(s) per scenario, best round kept; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
  console.log(`idle RSS: switchyard ${mib(idle.switchyard)}, bare Bun.serve ${mib(idle.bare)}`);

  const rows: string[] = [];
  try {
    for (const sc of scenarios) {
      const best: Record<string, Result> = {};
      for (let r = 0; r < rounds; r++) {
        // Alternate which server goes first so drift on a shared machine hits both alike.
        const order = r % 2 === 0 ? [["bare", bare], ["switchyard", sy]] as const : [["switchyard", sy], ["bare", bare]] as const;
        for (const [name, target] of order) {
          const res = await runClient<Result>(CLIENT, { url: target.url, subs: sc.subs, messages: sc.messages, bytes });
          if (!best[name] || res.perSecond > best[name]!.perSecond) best[name] = res;
        }
      }
      const s = best.switchyard!, b = best.bare!;
      const row = `| ${sc.subs} x ${fmt(sc.messages)} | ${fmt(s.perSecond)} | ${fmt(b.perSecond)} | **${(s.perSecond / b.perSecond).toFixed(2)}** | ${s.p50ms.toFixed(1)} / ${s.p99ms.toFixed(1)} | ${b.p50ms.toFixed(1)} / ${b.p99ms.toFixed(1)} | ${s.delivered === s.expected && b.delivered === b.expected ? "none" : `switchyard ${s.expected - s.delivered}, bare ${b.expected - b.delivered}`} |`;
      rows.push(row);
      console.log(row);
    }
    // Latency at a steady, moderate load (not saturated): 100 subscribers, 2,000 messages/s for 3 s.
    const paced: Record<string, Result> = {};
    for (const [name, target] of [["bare", bare], ["switchyard", sy]] as const) {
      paced[name] = await runClient<Result>(CLIENT, { url: target.url, subs: 100, messages: 6_000, bytes, rate: 2_000 });
    }
    const busy = await rssBytes(sy.pid);
    console.log("\n| subscribers x messages | switchyard delivered/s | bare delivered/s | ratio | switchyard p50 / p99 ms | bare p50 / p99 ms | lost |");
    console.log("|---|---|---|---|---|---|---|");
    for (const r of rows) console.log(r);
    console.log(`\npaced 100 subscribers x 2,000 msg/s: switchyard p50 ${paced.switchyard!.p50ms.toFixed(2)} ms, p99 ${paced.switchyard!.p99ms.toFixed(2)} ms; bare p50 ${paced.bare!.p50ms.toFixed(2)} ms, p99 ${paced.bare!.p99ms.toFixed(2)} ms`);
    console.log(`RSS: switchyard idle ${mib(idle.switchyard)}, after the runs ${mib(busy)}; bare idle ${mib(idle.bare)}`);
  } finally {
    await Promise.all([sy.stop(), bare.stop()]);
  }
}
