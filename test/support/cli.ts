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
