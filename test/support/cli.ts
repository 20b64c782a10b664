import { join } from "node:path";

/** The CLI's entry point. */
export const MAIN = join(import.meta.dir, "..", "..", "app", "main.ts");

/** Runs the real CLI in a subprocess with a clean SWITCHYARD_* environment plus `env`. */
export async function cli(args: string[], env: Record<string, string> = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHYARD_")));
  const p = Bun.spawn([process.execPath, MAIN, ...args], { env: { ...clean, ...env }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

/** A `switchyard serve` subprocess on 127.0.0.1 and a free port (UDP off), once it listens. */
export async function spawnServe(dataDir: string, env?: Record<string, string>) {
  const { waitFor } = await import("./server.ts");
  const p = Bun.spawn([process.execPath, MAIN, "serve", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", "0", "--udp-port", "0"], { stdout: "ignore", stderr: "pipe", stdin: "ignore", env: { ...process.env, ...env } });
  let log = "";
  const reader = (async () => { for await (const c of p.stderr) log += new TextDecoder().decode(c); })();
  try {
    await waitFor(() => /http=http:\/\/127\.0\.0\.1:\d+/.test(log) || p.exitCode !== null, "the server to listen", 10_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}; its log:\n${log.slice(-2000)}`);
  }
  if (p.exitCode !== null) throw new Error(`serve exited with ${p.exitCode} before listening; its log:\n${log.slice(-2000)}`);
  return { p, port: Number(/http=http:\/\/127\.0\.0\.1:(\d+)/.exec(log)![1]), log: () => log, reader };
}
