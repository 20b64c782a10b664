/**
 * Admin UI benchmark: what open admin pages cost the hub. One Switchyard process;
 * a publisher process sends ~100-byte messages flat out over a websocket, in
 * rounds alternating between no browser watching and N dashboards plus N live
 * tails of the publishing stream (server-sent event streams read by this
 * process, as browsers would). The baseline is the same server with no page open.
 * Measures accepted messages/s and the bytes the pages received.
 *
 *   npm run bench -- admin [--quick] [--pages N] [--rounds N]
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { rssBytes, runClient } from "./support/proc.ts";
import { startSwitchyard, type SwitchyardProcess } from "./support/switchyard-proc.ts";

const PUBLISHER = join(import.meta.dir, "support", "publisher.ts");
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

async function signIn(sy: SwitchyardProcess): Promise<string> {
  const password = readFileSync(join(sy.dataDir, "initial-admin-password"), "utf8").trim();
  const r = await fetch(`${sy.url}/admin/login`, { method: "POST", redirect: "manual", headers: { Origin: sy.url, "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ password }) });
  if (r.status !== 303) throw new Error(`sign-in failed: ${r.status}`);
  return r.headers.get("set-cookie")!.split(";")[0]!;
}

/** Opens `n` dashboards and `n` live tails of `stream`; returns a counter of bytes received and a closer. */
function openPages(sy: SwitchyardProcess, cookie: string, n: number, stream: string) {
  const aborts: AbortController[] = [];
  const got = { bytes: 0, events: 0 };
  const paths = [...Array(n)].flatMap(() => ["/admin/events/dashboard", `/admin/events/stream?name=${stream}`]);
  for (const path of paths) {
    const ac = new AbortController();
    aborts.push(ac);
    (async () => {
      try {
        const r = await fetch(sy.url + path, { headers: { cookie }, signal: ac.signal });
        for await (const chunk of r.body!) {
          got.bytes += chunk.byteLength;
          for (const b of chunk) if (b === 0x0a) got.events++;
        }
      } catch {
        // aborted
      }
    })();
  }
  return { got, close: () => aborts.forEach((a) => a.abort()) };
}

async function accepted(sy: SwitchyardProcess, stream: string): Promise<number> {
  const r = await fetch(`${sy.url}/api/streams/${stream}`);
  return r.ok ? ((await r.json()) as { messages_in: number }).messages_in : 0;
}

async function trial(sy: SwitchyardProcess, stream: string, messages: number) {
  const t0 = performance.now();
  await runClient<{ seconds: number }>(PUBLISHER, { url: `ws://127.0.0.1:${sy.port}/ws/${stream}`, messages, bytes: 100 });
  while ((await accepted(sy, stream)) < messages) await Bun.sleep(5);
  return messages / ((performance.now() - t0) / 1000);
}

export async function run(args: string[]) {
  const quick = args.includes("--quick");
  const opt = (name: string, fallback: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
  const pages = opt("--pages", 4);
  const rounds = opt("--rounds", quick ? 1 : 3);
  const messages = quick ? 200_000 : 1_000_000;
  // The log off: this measures the pages, not the disk.
  const sy = await startSwitchyard({ log_exclude: ["*"] });
  try {
    const cookie = await signIn(sy);
    await Bun.sleep(500);
    console.log(`admin UI benchmark: ${fmt(messages)} messages of ~100 bytes, one websocket publisher, ${pages} dashboards + ${pages} live tails of that stream vs none, ${rounds} round(s), best kept; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
    const best = { none: 0, pages: 0 };
    let received = { bytes: 0, events: 0, seconds: 0 };
    let rss = 0;
    for (let r = 0; r < rounds; r++) {
      for (const mode of r % 2 === 0 ? (["none", "pages"] as const) : (["pages", "none"] as const)) {
        const stream = `admin-${mode}-${r}`;
        const open = mode === "pages" ? openPages(sy, cookie, pages, stream) : null;
        await Bun.sleep(300);
        const t0 = performance.now();
        const rate = await trial(sy, stream, messages);
        if (open) {
          rss = Math.max(rss, await rssBytes(sy.pid));
          received = { ...open.got, seconds: (performance.now() - t0) / 1000 };
          open.close();
        }
        best[mode] = Math.max(best[mode], rate);
      }
    }
    console.log("\n| admin pages open | accepted messages/s |");
    console.log("|---|---|");
    console.log(`| none (baseline) | ${fmt(best.none)} |`);
    console.log(`| ${pages} dashboards + ${pages} live tails | ${fmt(best.pages)} |`);
    console.log(`\nratio with pages / without: **${(best.pages / best.none).toFixed(2)}**; the pages received ${fmt(received.bytes / received.seconds / 1024)} KiB/s in all (${fmt(received.events / received.seconds)} lines/s); server RSS ${(rss / 1048576).toFixed(1)} MiB`);
  } finally {
    await sy.stop();
  }
}
