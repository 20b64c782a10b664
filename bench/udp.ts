/**
 * UDP ingest benchmark: a sender process sends ~60-byte JSON datagrams with seq
 * numbers at stepped fixed rates and flat out, to Switchyard's listener (which
 * publishes each through the hub to one websocket subscriber) and, in the same
 * run, to a bare Bun.udpSocket receiver that only counts. Reports accepted/s and
 * loss, the highest rate with zero loss in every round, and the flat-out ratio.
 *
 *   npm run bench -- udp [--quick] [--rounds N]
 *   npm run bench -- udp --sources [--rounds N]   cost of checking senders (udp_allow_sources) against no check
 */
import { join } from "node:path";
import { countingSubscriber } from "./support/frame-counter.ts";
import { rssBytes, runClient, waitForOutput } from "./support/proc.ts";
import { startSwitchyard } from "./support/switchyard-proc.ts";
import type { Settings } from "../app/config/settings.ts";

const SENDER = join(import.meta.dir, "support", "udp-sender.ts");

interface Target {
  name: string;
  port: number;
  /** Datagrams the target has taken so far (accepted, for Switchyard; counted, for the bare receiver). */
  count(): Promise<number>;
  stop(): Promise<void>;
  pid: number;
}

async function freePort(): Promise<number> {
  const s = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  const p = s.port;
  s.close();
  return p;
}

async function startListenerUnderTest(settings: Partial<Settings> = {}, name = "switchyard"): Promise<Target & { delivered(): number }> {
  const udpPort = await freePort();
  const sy = await startSwitchyard(settings, udpPort);
  const subscriber = await countingSubscriber(sy.port, "/ws/bench");
  return {
    name, port: udpPort, pid: sy.pid,
    async count() {
      const r = await (await fetch(`${sy.url}/api/ingest`)).json() as { udp: { listeners: { port: number; accepted: number }[] } };
      return r.udp.listeners.find((l) => l.port === udpPort)!.accepted;
    },
    delivered: () => subscriber.count(),
    async stop() {
      subscriber.close();
      await sy.stop();
    },
  };
}

async function startBare(): Promise<Target> {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "support", "bare-udp.ts")], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const ports = (await waitForOutput(proc, /^(\d+ \d+)$/m)).split(" ").map(Number);
  return {
    name: "bare", port: ports[0]!, pid: proc.pid,
    count: async () => Number(await (await fetch(`http://127.0.0.1:${ports[1]}/`)).text()),
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/** Sends `count` datagrams at `rate` (0: flat out) and returns sent, taken, and the rate the target took them at. */
async function trial(t: Target, rate: number, count: number) {
  const before = await t.count();
  const r = await runClient<{ sent: number; seconds: number }>(SENDER, { port: t.port, rate, count, stream: "bench" });
  // Let the receiver finish what is queued in the socket buffer.
  let taken = (await t.count()) - before;
  for (let i = 0; i < 20; i++) {
    await Bun.sleep(50);
    const now = (await t.count()) - before;
    if (now === taken) break;
    taken = now;
  }
  return { sent: r.sent, taken, lost: r.sent - taken, perSecond: taken / r.seconds, seconds: r.seconds };
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/**
 * Flat out, the same datagrams to two Switchyards in the same run, rounds
 * alternating: one with no sender check (access loopback-open, no list), one
 * whose udp_allow_sources lists the sender's range. The ratio is the check's cost.
 */
async function sourcesRun(rounds: number) {
  const count = 500_000;
  const plain = await startListenerUnderTest({}, "no check");
  const listed = await startListenerUnderTest({ udp_allow_sources: ["10.0.0.0/8", "127.0.0.0/8", "fd00::/8"] }, "udp_allow_sources");
  try {
    const best: Record<string, number> = {};
    for (let r = 0; r < rounds; r++) {
      for (const t of r % 2 === 0 ? [plain, listed] : [listed, plain]) {
        const res = await trial(t, 0, count);
        best[t.name] = Math.max(best[t.name] ?? 0, res.perSecond);
      }
    }
    console.log(`udp sender check: flat out, ${fmt(count)} datagrams, best of ${rounds} rounds, ${navigator.hardwareConcurrency} cores`);
    console.log(`| no check | ${fmt(best["no check"]!)}/s |\n| udp_allow_sources (3 ranges) | ${fmt(best.udp_allow_sources!)}/s |`);
    console.log(`ratio with/without **${(best.udp_allow_sources! / best["no check"]!).toFixed(2)}**`);
  } finally {
    await plain.stop();
    await listed.stop();
  }
}

export async function run(args: string[]) {
  if (args.includes("--sources")) {
    const roundsArg = args.indexOf("--rounds");
    return sourcesRun(roundsArg >= 0 ? Number(args[roundsArg + 1]) : 4);
  }
  const quick = args.includes("--quick");
  const roundsArg = args.indexOf("--rounds");
  const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 3;
  const rates = quick ? [50_000, 100_000] : [25_000, 50_000, 100_000, 150_000, 200_000, 300_000];
  const seconds = quick ? 1 : 2;
  const flatCount = quick ? 200_000 : 1_000_000;
  const sy = await startListenerUnderTest();
  const bare = await startBare();
  const rmem = (await Bun.file("/proc/sys/net/core/rmem_default").text()).trim();
  console.log(`udp benchmark: ~60-byte JSON datagrams, sender and receivers on one machine (${navigator.hardwareConcurrency} cores), ${rounds} round(s), net.core.rmem_default=${rmem}`);
  const zeroLoss: Record<string, number> = { switchyard: 0, bare: 0 };
  const clean: Record<string, boolean> = { switchyard: true, bare: true };
  const table: string[] = [];
  try {
    for (const rate of rates) {
      const lost: Record<string, number[]> = { switchyard: [], bare: [] };
      const got: Record<string, number[]> = { switchyard: [], bare: [] };
      for (let r = 0; r < rounds; r++) {
        for (const t of r % 2 === 0 ? [bare, sy] : [sy, bare]) {
          const res = await trial(t, rate, rate * seconds);
          lost[t.name]!.push(res.lost);
          got[t.name]!.push(res.perSecond);
        }
      }
      // The highest rate such that it and every lower rate lost nothing in any round.
      for (const name of ["switchyard", "bare"]) {
        if (clean[name] && lost[name]!.every((l) => l === 0)) zeroLoss[name] = rate;
        else clean[name] = false;
      }
      const row = `| ${fmt(rate)}/s | ${fmt(Math.min(...got.switchyard!))} | ${lost.switchyard!.join(", ")} | ${fmt(Math.min(...got.bare!))} | ${lost.bare!.join(", ")} |`;
      table.push(row);
      console.log(row);
    }
    const flat: Record<string, { perSecond: number; lost: number; sent: number }> = {};
    for (let r = 0; r < rounds; r++) {
      for (const t of r % 2 === 0 ? [bare, sy] : [sy, bare]) {
        const res = await trial(t, 0, flatCount);
        if (!flat[t.name] || res.perSecond > flat[t.name]!.perSecond) flat[t.name] = res;
      }
    }
    const delivered = sy.delivered();
    const rss = await rssBytes(sy.pid);
    console.log("\n| offered rate | switchyard accepted/s (worst round) | switchyard lost per round | bare received/s (worst round) | bare lost per round |");
    console.log("|---|---|---|---|---|");
    for (const row of table) console.log(row);
    console.log(`\nhighest offered rate with zero loss in every round: switchyard ${fmt(zeroLoss.switchyard!)}/s, bare ${fmt(zeroLoss.bare!)}/s`);
    console.log(`flat out (${fmt(flatCount)} datagrams, best round): switchyard accepted ${fmt(flat.switchyard!.perSecond)}/s (lost ${fmt(flat.switchyard!.lost)}), bare ${fmt(flat.bare!.perSecond)}/s (lost ${fmt(flat.bare!.lost)}); ratio **${(flat.switchyard!.perSecond / flat.bare!.perSecond).toFixed(2)}**`);
    console.log(`the subscriber received ${fmt(delivered)} messages in all; switchyard RSS after the runs ${(rss / 1024 / 1024).toFixed(1)} MiB`);
  } finally {
    await sy.stop();
    await bare.stop();
  }
}
