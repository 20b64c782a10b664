/** Helpers for tests (and the benchmark) that run the compiled binaries in dist/. */
import { existsSync } from "node:fs";
import { join } from "node:path";

export const DIST = join(import.meta.dir, "..", "dist");
export const PLATFORMS = ["linux-x64", "linux-arm64"] as const;
export type Platform = (typeof PLATFORMS)[number];

/** How to run an arm64 binary on an x64 machine (Debian's qemu-user-static and the arm64 cross libraries). */
export const QEMU = ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"];

/** The command prefix that runs `platform`'s binary here, or why it cannot run. */
export function runnerFor(platform: Platform): { prefix: string[] } | { missing: string } {
  const native = process.arch === "x64" ? "linux-x64" : "linux-arm64";
  if (platform === native) return { prefix: [] };
  if (platform === "linux-arm64") {
    if (!Bun.which("qemu-aarch64-static")) return { missing: "qemu-aarch64-static is not installed (apt-get install qemu-user-static)" };
    if (!existsSync("/usr/aarch64-linux-gnu/lib/libstdc++.so.6")) return { missing: "the arm64 libraries are not installed (apt-get install libc6-arm64-cross libstdc++6-arm64-cross)" };
    return { prefix: QEMU };
  }
  return { missing: `cannot run ${platform} binaries on ${process.arch}` };
}

/**
 * The binary for `platform` in dist/, or why a test cannot use it. Missing is a
 * failure under CI (which builds first) and a loud skip otherwise.
 */
export function distBinary(platform: Platform): { path: string; prefix: string[] } | { missing: string; fail: boolean } {
  const path = join(DIST, `switchyard-${platform}`);
  const runner = runnerFor(platform);
  const missing = !existsSync(path) ? `${path} is missing: run npm run build first` : "missing" in runner ? runner.missing : null;
  if (missing === null) return { path, prefix: (runner as { prefix: string[] }).prefix };
  if (process.env.CI) return { missing: `${missing} (CI is set, so this is a failure, not a skip)`, fail: true };
  console.warn(`\n!!! SKIPPING the ${platform} binary tests: ${missing} !!!\n`);
  return { missing, fail: false };
}

/** A running `switchyard serve` from a binary, its log, and how to stop it. */
export interface BinaryServer {
  p: Bun.Subprocess<"ignore", "ignore", "pipe">;
  port: number;
  log(): string;
  stop(): Promise<number>;
}

/** Starts `cmd serve …` with exactly `env`, and waits (up to `timeoutMs`) for it to listen. */
export async function startBinaryServer(cmd: string[], opts: { cwd: string; env: Record<string, string>; args: string[]; timeoutMs: number }): Promise<BinaryServer> {
  const p = Bun.spawn([...cmd, "serve", "--host", "127.0.0.1", "--port", "0", ...opts.args], { cwd: opts.cwd, env: opts.env, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let log = "";
  void (async () => { for await (const c of p.stderr) log += new TextDecoder().decode(c); })();
  const deadline = Date.now() + opts.timeoutMs;
  let m: RegExpExecArray | null;
  while (!(m = /switchyard listening http=http:\/\/127\.0\.0\.1:(\d+)/.exec(log))) {
    if (p.exitCode !== null) throw new Error(`the server exited with ${p.exitCode} before listening:\n${log}`);
    if (Date.now() > deadline) {
      p.kill("SIGKILL");
      throw new Error(`the server did not listen within ${opts.timeoutMs} ms:\n${log}`);
    }
    await Bun.sleep(20);
  }
  return {
    p, port: Number(m[1]), log: () => log,
    async stop() {
      p.kill("SIGTERM");
      return p.exited;
    },
  };
}

/** An environment with nothing of this checkout in it: no node_modules, no Bun, no NODE_PATH. */
export function bareEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: home, LANG: "C.UTF-8", ...extra };
}
