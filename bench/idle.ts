/**
 * Idle cost benchmark: a `switchyard serve` with defaults and no clients, and in
 * the same run a bare Bun.serve answering /healthz (the baseline): CPU (percent
 * of one core, from /proc clock ticks over the window) and RSS. The target is
 * at most 0.1% of a core (a t2.nano earns 5%).
 *
 *   npm run bench -- idle [--seconds N] (default 120)
 */
import { join } from "node:path";
import { idleCpuPercent, rssBytes } from "./support/proc.ts";
import { startSwitchyard } from "./support/switchyard-proc.ts";

const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

export async function run(args: string[]) {
  const i = args.indexOf("--seconds");
  const seconds = i >= 0 ? Number(args[i + 1]) : args.includes("--quick") ? 30 : 120;
  const sy = await startSwitchyard({});
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const bare = Bun.spawn([process.execPath, join(import.meta.dir, "support", "bare-healthz.ts"), String(port)], { stdout: "ignore", stderr: "inherit" });
  try {
    // Let start-up work (and its garbage collection) settle first.
    await Bun.sleep(5000);
    const [s, b] = await Promise.all([idleCpuPercent(sy.pid, seconds), idleCpuPercent(bare.pid, seconds)]);
    console.log(`idle benchmark over ${seconds} s, no clients, default settings; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
    console.log("| | switchyard serve | bare Bun.serve |");
    console.log("|---|---|---|");
    console.log(`| CPU, % of one core | ${s.toFixed(3)} | ${b.toFixed(3)} |`);
    console.log(`| RSS | ${mib(await rssBytes(sy.pid))} | ${mib(await rssBytes(bare.pid))} |`);
    console.log(`\ntarget <= 0.1% of a core: ${s <= 0.1 ? "met" : "MISSED"}`);
  } finally {
    bare.kill();
    await bare.exited;
    await sy.stop();
  }
}
