/**
 * Acknowledged publishing: messages per second that the publisher has been told
 * are stored, over HTTP NDJSON batches and over websockets with ?ack=1 (both
 * answered only after the log's fsync), against NATS JetStream with file
 * storage and acked async publish, in the same run. One HTTP POST per message is
 * shown too (the acknowledged path before batches and acks). Prints the ratio.
 *
 *   npm run bench -- acks [--quick] [--rounds N]
 *
 * Needs nats-server (Debian: apt-get install nats-server) at /usr/sbin/nats-server
 * or on PATH; the JetStream rows are skipped (and said so) without it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as natsConnect } from "@nats-io/transport-node";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import { cpuSeconds, runClient, rssBytes, freeTcpPort } from "./support/proc.ts";
import { startSwitchyard } from "./support/switchyard-proc.ts";

interface Result { acked: number; seconds: number; perSecond: number; serverCpuMsPer1000?: number }
interface Case { name: string; target: "switchyard" | "jetstream"; mode: string; concurrency: number; batch?: number; window?: number; messages: number }

const CLIENT = join(import.meta.dir, "support", "ack-client.ts");
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/** nats-server with JetStream on a temp store dir, loopback only; null when it is not installed. */
async function startNats(): Promise<{ url: string; pid: number; stop(): Promise<void> } | null> {
  const bin = Bun.which("nats-server") ?? (await Bun.file("/usr/sbin/nats-server").exists() ? "/usr/sbin/nats-server" : null);
  if (!bin) return null;
  const dir = mkdtempSync(join(tmpdir(), "nats-bench-"));
  const port = freeTcpPort();
  const p = Bun.spawn([bin, "-js", "-sd", dir, "-a", "127.0.0.1", "-p", String(port)], { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  let log = "";
  const deadline = Date.now() + 15_000;
  for await (const chunk of p.stderr) {
    log += new TextDecoder().decode(chunk);
    if (log.includes("Server is ready") || Date.now() > deadline) break;
  }
  if (!log.includes("Server is ready")) throw new Error(`nats-server did not start: ${log}`);
  (async () => { for await (const _ of p.stderr) { /* drain */ } })();
  return {
    url: `nats://127.0.0.1:${port}`, pid: p.pid,
    async stop() {
      p.kill("SIGTERM");
      await p.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const roundsArg = args.indexOf("--rounds");
  const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 3;
  const n = quick ? 50_000 : 200_000;
  const bytes = 100;
  const cases: Case[] = [
    { name: "HTTP, one POST per message, 64 concurrent", target: "switchyard", mode: "http-single", concurrency: 64, messages: quick ? 10_000 : 30_000 },
    { name: "HTTP NDJSON batches of 100, 16 concurrent", target: "switchyard", mode: "http-batch", concurrency: 16, batch: 100, messages: n },
    { name: "HTTP NDJSON batches of 1,000, 4 concurrent", target: "switchyard", mode: "http-batch", concurrency: 4, batch: 1000, messages: n },
    { name: "websocket ?ack=1, 8 publishers, 1,000 unacked each", target: "switchyard", mode: "ws-ack", concurrency: 8, window: 1000, messages: n },
    { name: "websocket ?ack=1, 1 publisher, 1,000 unacked", target: "switchyard", mode: "ws-ack", concurrency: 1, window: 1000, messages: n },
    { name: "JetStream (file storage), 8 connections, 1,000 unacked each", target: "jetstream", mode: "jetstream", concurrency: 8, window: 1000, messages: n },
    { name: "JetStream (file storage), 1 connection, 1,000 unacked", target: "jetstream", mode: "jetstream", concurrency: 1, window: 1000, messages: n },
  ];

  const sy = await startSwitchyard();
  const nats = await startNats();
  try {
    if (nats) {
      const nc = await natsConnect({ servers: nats.url });
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "bench", subjects: ["bench.>"], storage: StorageType.File });
      await nc.close();
    }
    console.log(`acknowledged publishing: ${bytes}-byte JSON messages, acknowledged only once stored (Switchyard: after fsync); best of ${rounds} round(s); Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores; ${nats ? "nats-server with -js (file storage)" : "nats-server NOT FOUND: JetStream rows skipped"}`);
    const best = new Map<string, Result>();
    for (let r = 0; r < rounds; r++) {
      // Alternate the order between rounds so neither side always runs on a warmer machine.
      const order = r % 2 === 0 ? cases : [...cases].reverse();
      for (const c of order) {
        if (c.target === "jetstream" && !nats) continue;
        const url = c.target === "jetstream" ? nats!.url : sy.url;
        const stream = c.target === "jetstream" ? "bench" : `bench-${c.mode}`;
        const pid = c.target === "jetstream" ? nats!.pid : sy.pid;
        const cpu = await cpuSeconds(pid);
        const res = await runClient<Result>(CLIENT, { mode: c.mode, url, stream, messages: c.messages, bytes, concurrency: c.concurrency, batch: c.batch, window: c.window });
        res.serverCpuMsPer1000 = ((await cpuSeconds(pid)) - cpu) * 1000 / (res.acked / 1000);
        if (!best.has(c.name) || res.perSecond > best.get(c.name)!.perSecond) best.set(c.name, res);
      }
    }
    console.log("\n| publisher | acknowledged msg/s | messages | seconds | server CPU ms per 1,000 |");
    console.log("|---|---|---|---|---|");
    for (const c of cases) {
      const b = best.get(c.name);
      if (b) console.log(`| ${c.name} | ${fmt(b.perSecond)} | ${fmt(b.acked)} | ${b.seconds.toFixed(2)} | ${b.serverCpuMsPer1000!.toFixed(1)} |`);
    }
    const rate = (name: string) => best.get(name)?.perSecond ?? NaN;
    const js = rate(cases[5]!.name);
    if (nats) {
      const batch = Math.max(rate(cases[1]!.name), rate(cases[2]!.name));
      console.log(`\nratio HTTP batches / JetStream: **${(batch / js).toFixed(2)}**; websocket ?ack=1 / JetStream (8 each): **${(rate(cases[3]!.name) / js).toFixed(2)}**; single POST / JetStream: ${(rate(cases[0]!.name) / js).toFixed(2)}`);
      console.log(`RSS: switchyard ${(await rssBytes(sy.pid) / 1048576).toFixed(1)} MiB, nats-server ${(await rssBytes(nats.pid) / 1048576).toFixed(1)} MiB`);
    }
    const stats = (await (await fetch(`${sy.url}/healthz`)).json()) as Record<string, unknown>;
    console.log(`switchyard log after the run: ${JSON.stringify(stats.log)}`);
  } finally {
    await nats?.stop();
    await sy.stop();
  }
}
