/**
 * Durable-log benchmark, part 1: sustained ingest. A publisher process sends
 * ~100-byte messages flat out over a websocket to one Switchyard process, with
 * the durable log on (the default) and off (`log_exclude: ["*"]`, switched live
 * through PATCH /api/settings between rounds). One process for both, because two
 * identical server processes on this machine were seen to differ by 2x.
 * Measures messages/s the hub accepted (from the first message to the last
 * counted in /api/streams) and RSS idle and during ingest.
 *
 *   npm run bench -- log [--quick] [--rounds N]
 *
 * Parts 2 and 3 (query latency over 10 million rows, RSS during a query) come
 * with the DuckDB query engine.
 */
import { join } from "node:path";
import { rssBytes, runClient } from "./support/proc.ts";
import { startSwitchyard, type SwitchyardProcess } from "./support/switchyard-proc.ts";

const PUBLISHER = join(import.meta.dir, "support", "publisher.ts");
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

async function accepted(sy: SwitchyardProcess, stream: string): Promise<number> {
  const r = await fetch(`${sy.url}/api/streams/${stream}`);
  return r.ok ? ((await r.json()) as { messages_in: number }).messages_in : 0;
}

/** Publishes `messages` on a fresh stream and returns the accepted rate and the peak RSS meanwhile. */
async function trial(sy: SwitchyardProcess, stream: string, messages: number) {
  let peak = 0;
  const sampler = setInterval(async () => { peak = Math.max(peak, await rssBytes(sy.pid)); }, 100);
  const t0 = performance.now();
  await runClient<{ seconds: number }>(PUBLISHER, { url: `ws://127.0.0.1:${sy.port}/ws/${stream}`, messages, bytes: 100 });
  while ((await accepted(sy, stream)) < messages) await Bun.sleep(5);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  return { perSecond: messages / seconds, peak };
}

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const roundsArg = args.indexOf("--rounds");
  const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 3;
  const messages = quick ? 200_000 : 1_000_000;
  const sy = await startSwitchyard({});
  const setLog = async (on: boolean) => {
    const r = await fetch(`${sy.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ log_exclude: on ? [] : ["*"] }) });
    if (!r.ok) throw new Error(`could not switch the log: ${await r.text()}`);
  };
  try {
    await Bun.sleep(500);
    const idle = await rssBytes(sy.pid);
    console.log(`log benchmark: ${fmt(messages)} messages of ~100 bytes, one websocket publisher, ${rounds} round(s), best kept; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
    const best: Record<string, { perSecond: number; peak: number }> = {};
    for (let r = 0; r < rounds; r++) {
      for (const name of r % 2 === 0 ? ["off", "on"] : ["on", "off"]) {
        await setLog(name === "on");
        const res = await trial(sy, `ingest-${name}-${r}`, messages);
        if (!best[name] || res.perSecond > best[name]!.perSecond) best[name] = res;
      }
    }
    console.log("\n| durable log | accepted messages/s | peak RSS during ingest |");
    console.log("|---|---|---|");
    console.log(`| on (default) | ${fmt(best.on!.perSecond)} | ${mib(best.on!.peak)} |`);
    console.log(`| off (log_exclude ["*"]) | ${fmt(best.off!.perSecond)} | ${mib(best.off!.peak)} |`);
    console.log(`\nratio on / off: **${(best.on!.perSecond / best.off!.perSecond).toFixed(2)}**; idle RSS ${mib(idle)}`);
  } finally {
    await sy.stop();
  }
}
