/**
 * Helpers for the install.sh tests: throwaway roots for `install.sh --root`, and
 * a runner with the stub systemctl (test/install-stubs/systemctl) on PATH, which
 * starts the installed binary as the unit says (as the unit's user).
 */
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Platform } from "./binary-support.ts";

export const REPO = join(import.meta.dir, "..");
export const INSTALL = join(REPO, "install.sh");
export const STUBS = join(import.meta.dir, "install-stubs");
export const NATIVE: Platform = process.arch === "arm64" ? "linux-arm64" : "linux-x64";

const roots: string[] = [];

/** A new throwaway root (removed, its service killed, by `removeRoots`). */
export function newRoot(): string {
  const r = mkdtempSync(join(tmpdir(), "switchyard-root-"));
  // Like /, the root is open to every user: the service runs as its own user (the stub systemctl uses setpriv).
  chmodSync(r, 0o755);
  roots.push(r);
  return r;
}

/** Kills the services started in the roots and removes them (for afterAll). */
export function removeRoots(): void {
  for (const r of roots.splice(0)) {
    const pid = join(r, "service.pid");
    if (existsSync(pid)) try { process.kill(Number(readFileSync(pid, "utf8")), "SIGKILL"); } catch { /* gone */ }
    rmSync(r, { recursive: true, force: true });
  }
}

/** Runs `sh install.sh ARGS` with no terminal on stdin, the stub systemctl first on PATH. */
export function install(args: string[], opts: { root?: string; path?: string[]; env?: Record<string, string> } = {}) {
  const PATH = [...(opts.path ?? []), STUBS, process.env.PATH].join(":");
  // SYSTEMCTL: the stub manages the throwaway root's service (without it, --root only writes an image).
  // A proxy in the environment must not catch the health check on 127.0.0.1.
  const env = { PATH, HOME: process.env.HOME ?? "/root", STUB_ROOT: opts.root ?? "/nonexistent", SYSTEMCTL: join(STUBS, "systemctl"), http_proxy: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9", ...opts.env };
  const r = Bun.spawnSync(["sh", INSTALL, ...args], { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

/** The systemctl calls the stub recorded for `root`. */
export const calls = (root: string) => (existsSync(join(root, "systemctl.log")) ? readFileSync(join(root, "systemctl.log"), "utf8").trim().split("\n") : []);
export const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");

/** The uid and gid install.sh gave the service user in `root`. */
export function serviceIds(root: string): { uid: number; gid: number } {
  const line = readFileSync(join(root, "etc/passwd"), "utf8").split("\n").find((l) => l.startsWith("switchyard:"));
  if (!line) throw new Error(`no switchyard user in ${root}/etc/passwd`);
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Whether a test that needs the tool `name` is skipped: when it is missing and
 * CI is not set. Use with `it.skipIf`, so the skip shows as a skip; under CI the
 * test runs and `requireTool` fails it.
 */
export function lacksTool(name: string): boolean {
  return !Bun.which(name) && !process.env.CI;
}

/** Fails the test when a tool it needs is missing (reached only under CI, see lacksTool). */
export function requireTool(name: string): void {
  if (!Bun.which(name)) throw new Error(`${name} is not installed (CI is set: .ci/run installs it)`);
}
