import { afterAll, afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SettingsStore } from "../app/config/store.ts";
import { cli, MAIN, spawnServe } from "./support/cli.ts";
import { connect } from "./support/client.ts";
import { startTestServer, tempDir } from "./support/server.ts";

// Real subprocesses (the CLI, a server, another uid): more than Bun's 5 s default on a busy machine.
setDefaultTimeout(90_000);

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
function dataDir(): string {
  const t = tempDir();
  cleanups.push(() => t.remove());
  return t.dir;
}
async function serve(dir: string) {
  const s = await spawnServe(dir);
  cleanups.push(async () => {
    s.p.kill();
    await s.p.exited;
  });
  return { ...s, url: `http://127.0.0.1:${s.port}` };
}
function stored(dir: string) {
  const store = SettingsStore.open(dir);
  try {
    return store.settings;
  } finally {
    store.close();
  }
}

describe("switchyard settings", () => {
  it("with no server running, stores the change for the next start, with the same validation and messages as PATCH /api/settings", async () => {
    const dir = dataDir();
    const set = await cli(["settings", "set", "max_connections", "5", "--data-dir", dir]);
    expect(set).toMatchObject({ code: 0, stdout: "max_connections = 5 (stored; the server is not running, so it applies when it next starts)\n" });
    expect((await cli(["settings", "get", "max_connections", "--data-dir", dir])).stdout).toBe("5\n");
    expect((await cli(["settings", "set", "udp_allow_sources", '["10.0.0.0/8"]', "--data-dir", dir])).code).toBe(0);
    expect((await cli(["settings", "set", "public_url", "https://relay.example.org", "--data-dir", dir])).code).toBe(0);
    expect(stored(dir)).toMatchObject({ max_connections: 5, udp_allow_sources: ["10.0.0.0/8"], public_url: "https://relay.example.org" });
    expect(JSON.parse((await cli(["settings", "get", "--data-dir", dir])).stdout).max_connections).toBe(5);

    // The same message as the API gives for the same bad value.
    const api = await startTestServer();
    cleanups.push(() => api.close());
    for (const [key, value, json] of [["access", "everyone", '"everyone"'], ["max_connections", "0", "0"], ["nosuch", "1", "1"]] as const) {
      const r = await fetch(`${api.url}/api/settings`, { method: "PATCH", body: `{${JSON.stringify(key)}:${json}}`, headers: api.adminHeaders });
      const message = (await r.json()).error.message as string;
      expect(r.status).toBe(400);
      const bad = await cli(["settings", "set", key, value, "--data-dir", dir]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toBe(`switchyard settings set: ${message}\n`);
    }
    expect(stored(dir).max_connections).toBe(5);
    expect((await cli(["settings", "get", "nosuch", "--data-dir", dir])).stderr).toContain('unknown setting "nosuch"; known: access,');
    const none = await cli(["settings", "get", "access", "--data-dir", join(dir, "missing")]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("there is no settings store in");
    expect((await cli(["settings", "frob", "--data-dir", dir])).code).toBe(2);
  });

  it("with the server running, applies the change live through its API (and says when a restart is needed)", async () => {
    const dir = dataDir();
    const s = await serve(dir);
    const open = await connect(`ws://127.0.0.1:${s.port}/ws/spin30`);
    expect(open.ws.readyState).toBe(WebSocket.OPEN);
    open.close();
    const set = await cli(["settings", "set", "access", "token", "--data-dir", dir]);
    expect(set).toMatchObject({ code: 0, stdout: `access = token (applied to the running server at ${s.url})\n` });
    // Live: a client without a token is refused at once, without a restart.
    const refused = await connect(`ws://127.0.0.1:${s.port}/ws/spin30`);
    expect((await refused.closed).code).toBe(1008);
    const restart = await cli(["settings", "set", "keepalive_seconds", "30", "--data-dir", dir]);
    expect(restart.stdout).toContain("note: keepalive_seconds takes effect after a restart");
    const bad = await cli(["settings", "set", "access", "everyone", "--data-dir", dir]);
    expect(bad).toMatchObject({ code: 1, stderr: 'switchyard settings set: invalid settings: access: "everyone" is not valid; allowed: open, loopback-open, token\n' });
    expect((await cli(["settings", "get", "access", "--data-dir", dir])).stdout).toBe("token\n");
    // Stopped, the server leaves no server file; a change is stored and in force at the next start.
    s.p.kill();
    await s.p.exited;
    expect(existsSync(join(dir, "server.json"))).toBe(false);
    expect((await cli(["settings", "set", "access", "open", "--data-dir", dir])).stdout).toContain("(stored;");
    const again = await serve(dir);
    const free = await connect(`ws://127.0.0.1:${again.port}/ws/spin30`);
    expect(free.ws.readyState).toBe(WebSocket.OPEN);
    free.close();
    // kill -9 leaves the server file behind: a stale one is recognised and the change stored.
    again.p.kill(9);
    await again.p.exited;
    expect(existsSync(join(dir, "server.json"))).toBe(true);
    expect((await cli(["settings", "set", "max_connections", "9", "--data-dir", dir])).stdout).toBe("max_connections = 9 (stored; the server is not running, so it applies when it next starts)\n");
  });
});

describe("switchyard token --admin", () => {
  it("prints an admin token the server takes; --revoke-admin ends every one at once; a stream scope 'admin' is refused", async () => {
    const dir = dataDir();
    const s = await serve(dir);
    const made = await cli(["token", "--admin", "--ttl", "10m", "--data-dir", dir]);
    expect(made.code).toBe(0);
    const token = made.stdout.trim();
    expect(token).toMatch(/^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
    const get = (t: string) => fetch(`${s.url}/api/settings`, { headers: { Authorization: `Bearer ${t}` } });
    expect((await get(token)).status).toBe(200);
    expect((await fetch(`${s.url}/api/settings`)).status).toBe(401);
    // A stream token of the same box is no admin token, whatever it says.
    const stream = (await cli(["token", "--stream", "*", "--data-dir", dir])).stdout.trim();
    expect((await get(stream)).status).toBe(401);
    const scoped = await cli(["token", "--stream", "*", "--scopes", "read,admin", "--data-dir", dir]);
    expect(scoped.code).toBe(2);
    expect(scoped.stderr).toContain("'admin' is not a stream scope; admin power needs an admin token: switchyard token --admin");
    expect((await cli(["token", "--admin", "--stream", "x", "--data-dir", dir])).code).toBe(2);
    const revoked = await cli(["token", "--revoke-admin", "--data-dir", dir]);
    expect(revoked.code).toBe(0);
    const after = await get(token);
    expect(after.status).toBe(401);
    expect((await after.json()).error.message).toContain("not an admin token of this box");
    const fresh = (await cli(["token", "--admin", "--data-dir", dir])).stdout.trim();
    expect((await get(fresh)).status).toBe(200);
  });
});

describe("only whoever can read the data dir", () => {
  /**
   * The CLI as another user can run it: the checkout (and the Bun inside its
   * node_modules) may sit in a folder only root can enter (a CI clone in a 0700
   * temp dir), so Bun and the bundled CLI are copied to a folder anyone can read.
   */
  let runnable: { bun: string; main: string; dir: string } | null = null;
  async function cliForAnyone() {
    if (runnable) return runnable;
    const dir = mkdtempSync(join(tmpdir(), "switchyard-cli-"));
    const built = await Bun.build({ entrypoints: [MAIN], target: "bun", outdir: dir, external: ["@duckdb/*"] });
    if (!built.success) throw new Error(`bundling the CLI failed: ${built.logs.join("\n")}`);
    copyFileSync(process.execPath, join(dir, "bun"));
    for (const f of readdirSync(dir, { recursive: true }) as string[]) chmodSync(join(dir, f), 0o755);
    chmodSync(dir, 0o755);
    runnable = { bun: join(dir, "bun"), main: join(dir, "main.js"), dir };
    return runnable;
  }
  afterAll(() => {
    if (runnable) rmSync(runnable.dir, { recursive: true, force: true });
  });
  /** Runs the CLI as uid/gid 65534 (nobody), as another local user would. */
  async function asNobody(args: string[]) {
    const { bun, main, dir } = await cliForAnyone();
    // In the bundle's folder: the bundle finds the admin UI's assets next to it.
    const p = Bun.spawn(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bun, main, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/tmp" }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { stdout, stderr, code };
  }

  it.if(process.getuid?.() === 0 && Bun.which("setpriv") !== null)("another uid is refused: settings get/set and token --admin print no secret and change nothing", async () => {
    const dir = dataDir();
    const s = await serve(dir);
    // Even with the folder open to everyone (a checkout's 0755), the store is the owner's (0600).
    chmodSync(dir, 0o755);
    for (const args of [["settings", "get", "access"], ["settings", "set", "access", "open"], ["token", "--admin"], ["token", "--revoke-admin"]]) {
      const r = await asNobody([...args, "--data-dir", dir]);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr).toContain(`cannot read ${join(dir, "switchyard.db")}: permission denied. Only the data dir's owner may do this`);
      expect(r.stdout).toBe("");
    }
    // With the folder closed (0700, as installed), the same.
    chmodSync(dir, 0o700);
    const closed = await asNobody(["token", "--admin", "--data-dir", dir]);
    expect(closed.code).toBe(1);
    expect(closed.stdout).toBe("");
    expect(stored(dir).access).toBe("loopback-open");
    expect((await fetch(`${s.url}/api/settings`, { headers: { Authorization: `Bearer ${(await cli(["token", "--admin", "--data-dir", dir])).stdout.trim()}` } })).status).toBe(200);
  });
});
