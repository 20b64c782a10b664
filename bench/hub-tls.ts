/**
 * TLS benchmark: the same Switchyard (`serve`, access policy `token`, a token
 * on every client) over wss:// with certificate files and over plain ws://, in
 * the same run, alternating which goes first. Fan-out (subscribers x messages
 * on one stream, delivered per second) and new connections per second (each a
 * fresh TCP + TLS handshake + websocket upgrade, then closed). Prints ratios wss/ws.
 *
 *   npm run bench -- hub --tls [--quick] [--rounds N]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { runClient } from "./support/proc.ts";
import { startSwitchyard } from "./support/switchyard-proc.ts";

interface FanOut { delivered: number; expected: number; perSecond: number; p50ms: number; p99ms: number }
interface Connects { opened: number; failed: number; perSecond: number; p50ms: number; p99ms: number }

const FANOUT = join(import.meta.dir, "support", "fanout-client.ts");
const CONNECT = join(import.meta.dir, "support", "connect-client.ts");

/** A CA and a localhost certificate (EC P-256, as ACME clients get by default) made with openssl. */
function makeCertificate(dir: string): { ca: string; cert: string; key: string } {
  const run = (...args: string[]) => {
    const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdin: "ignore" });
    if (r.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  run("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign");
  run("req", "-new", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost");
  Bun.write(join(dir, "leaf.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.crt", "-days", "2", "-extfile", "leaf.ext");
  return { ca: join(dir, "ca.crt"), cert: join(dir, "leaf.crt"), key: join(dir, "leaf.key") };
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const roundsArg = args.indexOf("--rounds");
  const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 3;
  const scenarios = quick ? [{ subs: 10, messages: 20_000 }, { subs: 100, messages: 4_000 }] : [{ subs: 10, messages: 100_000 }, { subs: 100, messages: 20_000 }, { subs: 1000, messages: 2_000 }];
  const connects = quick ? 500 : 2_000;
  const bytes = 80;
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-tls-"));
  const pair = makeCertificate(dir);
  const ca = await Bun.file(pair.ca).text();
  const settings = { access: "token" as const, backpressure_limit_bytes: 16 * 1024 * 1024 };
  const plain = await startSwitchyard(settings);
  const tls = await startSwitchyard(settings, 0, undefined, ["--tls-cert", pair.cert, "--tls-key", pair.key]);
  const url = async (sy: typeof plain, scheme: string) =>
    `${scheme}://${scheme === "wss" ? "localhost" : "127.0.0.1"}:${sy.port}/ws/bench?token=${await signStreamToken(sy.secret, { topic: "bench", scopes: ["read", "write"], ttlSeconds: 3600 })}`;
  const targets = { ws: { url: await url(plain, "ws") }, wss: { url: await url(tls, "wss"), ca } };
  console.log(`hub --tls benchmark: the same Switchyard over wss:// (certificate files, EC P-256) and ws://, ${bytes}-byte messages, ${rounds} round(s), best kept; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
  const rows: string[] = [];
  try {
    for (const sc of scenarios) {
      const best: Record<string, FanOut> = {};
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? (["ws", "wss"] as const) : (["wss", "ws"] as const);
        for (const name of order) {
          const res = await runClient<FanOut>(FANOUT, { ...targets[name], subs: sc.subs, messages: sc.messages, bytes });
          if (!best[name] || res.perSecond > best[name]!.perSecond) best[name] = res;
        }
      }
      const s = best.wss!, p = best.ws!;
      const row = `| fan-out ${sc.subs} x ${fmt(sc.messages)} | ${fmt(s.perSecond)} delivered/s | ${fmt(p.perSecond)} delivered/s | **${(s.perSecond / p.perSecond).toFixed(2)}** | ${s.p50ms.toFixed(1)} / ${s.p99ms.toFixed(1)} | ${p.p50ms.toFixed(1)} / ${p.p99ms.toFixed(1)} | ${s.delivered === s.expected && p.delivered === p.expected ? "none" : `wss ${s.expected - s.delivered}, ws ${p.expected - p.delivered}`} |`;
      rows.push(row);
      console.log(row);
    }
    const bestC: Record<string, Connects> = {};
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (["ws", "wss"] as const) : (["wss", "ws"] as const);
      for (const name of order) {
        const res = await runClient<Connects>(CONNECT, { ...targets[name], count: connects, concurrency: 8 });
        if (res.failed > 0) throw new Error(`${res.failed} ${name} connections failed`);
        if (!bestC[name] || res.perSecond > bestC[name]!.perSecond) bestC[name] = res;
      }
    }
    const s = bestC.wss!, p = bestC.ws!;
    const row = `| new connections (${fmt(connects)}, 8 at a time) | ${fmt(s.perSecond)} /s | ${fmt(p.perSecond)} /s | **${(s.perSecond / p.perSecond).toFixed(2)}** | ${s.p50ms.toFixed(1)} / ${s.p99ms.toFixed(1)} | ${p.p50ms.toFixed(1)} / ${p.p99ms.toFixed(1)} | none |`;
    rows.push(row);
    console.log("\n| what | wss:// | ws:// | ratio wss/ws | wss p50 / p99 ms | ws p50 / p99 ms | lost |");
    console.log("|---|---|---|---|---|---|---|");
    for (const r of rows) console.log(r);
  } finally {
    await Promise.all([plain.stop(), tls.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}
