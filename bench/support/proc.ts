import type { Subprocess } from "bun";
import { readFileSync } from "node:fs";

/** Resident set size of a process in bytes, from /proc (Linux). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await Bun.file(`/proc/${pid}/status`).text();
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : NaN;
}

/** Peak resident set size of a process in bytes (VmHWM), from /proc (Linux): `pid`, or this process. */
export function peakRssBytes(pid: number | "self" = "self"): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}

/** A Switchyard hub's query processes (its children running `__query-engine`; compaction runs are left out). */
export async function queryProcesses(pid: number): Promise<number[]> {
  try {
    const all = (await Bun.file(`/proc/${pid}/task/${pid}/children`).text()).trim().split(/\s+/).filter(Boolean).map(Number);
    const out: number[] = [];
    for (const c of all) if ((await Bun.file(`/proc/${c}/cmdline`).text().catch(() => "")).includes("__query-engine")) out.push(c);
    return out;
  } catch {
    return [];
  }
}

/** Reads a child's stdout until `pattern` matches and returns the first group. */
export async function waitForOutput(proc: Subprocess<"ignore", "pipe" | "ignore", "pipe" | "inherit">, pattern: RegExp, stream: "stdout" | "stderr" = "stdout", ms = 15_000): Promise<string> {
  const reader = (proc[stream] as ReadableStream<Uint8Array>).getReader();
  let text = "";
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    const m = pattern.exec(text);
    if (m) {
      reader.releaseLock();
      // Keep draining so the child never blocks on a full pipe.
      const rest = proc[stream] as ReadableStream<Uint8Array>;
      (async () => { for await (const _ of rest) { /* discard */ } })();
      return m[1] ?? m[0];
    }
  }
  throw new Error(`child did not print ${pattern} within ${ms} ms; it printed: ${text}`);
}

/** Runs a bench client process and parses the JSON line it prints. */
export async function runClient<T>(script: string, args: unknown): Promise<T> {
  const p = Bun.spawn([process.execPath, script, JSON.stringify(args)], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const out = await new Response(p.stdout).text();
  const code = await p.exited;
  if (code !== 0) throw new Error(`${script} exited ${code}: ${out}`);
  return JSON.parse(out.trim().split("\n").pop()!) as T;
}

/** CPU time a process has used so far (user + system), in seconds, from /proc (Linux). */
export async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await Bun.file(`/proc/${pid}/stat`).text()).split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks: USER_HZ is 100 on Linux
}

/** Percent of one core a process uses over `seconds` (sampled from /proc). */
export async function idleCpuPercent(pid: number, seconds: number): Promise<number> {
  const a = await cpuSeconds(pid);
  await Bun.sleep(seconds * 1000);
  return ((await cpuSeconds(pid)) - a) / seconds * 100;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freeTcpPort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}
