/**
 * Smoke test of the compiled binaries (dist/, from `npm run build`): each is
 * copied alone into an empty folder outside the repo and run with a bare
 * environment, so nothing of node_modules can help. The arm64 one runs under
 * qemu-aarch64-static.
 */
import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { firstPassword } from "./support/admin.ts";
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createHash } from "node:crypto";
import { bareEnv, DIST, distBinary, PLATFORMS, type BinaryServer, startBinaryServer } from "./binary-support.ts";
import { adminHeadersFor, freeUdpPort } from "./support/server.ts";

setDefaultTimeout(60_000);

function parquetFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".parquet"));
}

async function poll(check: () => boolean | Promise<boolean>, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** A websocket client that keeps what it receives. */
async function wsClient(url: string, ms: number): Promise<{ ws: WebSocket; got: string[] }> {
  const ws = new WebSocket(url);
  const got: string[] = [];
  ws.onmessage = (e) => got.push(String(e.data));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`websocket ${url} did not open within ${ms} ms`)), ms);
    ws.onopen = () => (clearTimeout(t), resolve());
    ws.onerror = () => (clearTimeout(t), reject(new Error(`websocket ${url} failed`)));
  });
  return { ws, got };
}

async function query(port: number, sql: string, dataDir: string): Promise<Record<string, unknown>[]> {
  const r = await fetch(`http://127.0.0.1:${port}/api/query`, { method: "POST", body: JSON.stringify({ sql, format: "json" }), headers: await adminHeadersFor(dataDir) });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`POST /api/query answered ${r.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>[];
}

for (const platform of PLATFORMS) {
  const bin = distBinary(platform);
  const emulated = "prefix" in bin && bin.prefix.length > 0;
  // qemu runs the JIT and DuckDB about ten times slower.
  const slow = emulated ? 10 : 1;
  describe(`the ${platform} binary${emulated ? " (emulated: qemu-aarch64-static)" : ""}, alone in an empty folder`, () => {
    if ("missing" in bin) {
      if (bin.fail) it("is built", () => { throw new Error(bin.missing); });
      else it.skip(`(skipped: ${bin.missing})`, () => {});
      return;
    }
    let dir = "";
    let cmd: string[] = [];
    let env: Record<string, string> = {};
    let udpPort = 0;
    let server: BinaryServer | null = null;
    const cacheDir = () => join(dir, "cache", "switchyard");
    const nativeFiles = () => readdirSync(cacheDir()).flatMap((d) => ["libduckdb.so", "duckdb.node"].map((f) => join(cacheDir(), d, f)));

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "switchyard-binary-"));
      copyFileSync(bin.path, join(dir, "switchyard"));
      chmodSync(join(dir, "switchyard"), 0o755);
      cmd = [...bin.prefix, join(dir, "switchyard")];
      // Emulated, the query and compaction processes must start through qemu too (no binfmt here).
      env = bareEnv(join(dir, "home"), { XDG_CACHE_HOME: join(dir, "cache"), ...(emulated ? { SWITCHYARD_CHILD_LAUNCHER: bin.prefix.join(" ") } : {}) });
      udpPort = await freeUdpPort();
    });
    afterAll(async () => {
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("has no node_modules within reach", () => {
      for (let d = dir; ; d = dirname(d)) {
        expect(existsSync(join(d, "node_modules"))).toBe(false);
        if (d === dirname(d)) break;
      }
    });

    it("first start: unpacks DuckDB, serves /healthz, takes websocket and UDP messages and answers SQL over them", async () => {
      server = await startBinaryServer(cmd, { cwd: dir, env, args: ["--data-dir", join(dir, "data"), "--udp-port", String(udpPort), "--udp-host", "127.0.0.1"], timeoutMs: 15_000 * slow });
      expect(server.log()).toContain("duckdb native library unpacked");
      expect(nativeFiles().every((f) => existsSync(f))).toBe(true);

      const health = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: "ok" });

      const sub = await wsClient(`ws://127.0.0.1:${server.port}/ws/smoke`, 5000 * slow);
      const pub = await wsClient(`ws://127.0.0.1:${server.port}/ws/smoke`, 5000 * slow);
      pub.ws.send("hello over websocket");
      await poll(() => sub.got.length === 1, "the websocket message", 5000 * slow);
      const udp = await Bun.udpSocket({});
      udp.send(JSON.stringify({ stream: "smoke", v: 42 }), udpPort, "127.0.0.1");
      await poll(() => sub.got.length === 2, "the UDP message", 5000 * slow);
      udp.close();
      sub.ws.close();
      pub.ws.close();
      expect(sub.got).toEqual(["hello over websocket", '{"stream":"smoke","v":42}']);

      const rows = await query(server.port, "SELECT stream, seq::INT AS seq, origin, data FROM messages ORDER BY seq", join(dir, "data"));
      expect(rows.map((r) => [r.stream, r.seq, r.data])).toEqual([["smoke", 1, "hello over websocket"], ["smoke", 2, '{"stream":"smoke","v":42}']]);
      expect(String(rows[1]!.origin)).toStartWith("udp:");

      // The admin UI comes out of the binary too: pages, htmx, uPlot, the first password.
      const base = `http://127.0.0.1:${server.port}`;
      const password = firstPassword(join(dir, "data"));
      const login = await fetch(`${base}/admin/login`, { method: "POST", redirect: "manual", headers: { Origin: base }, body: new URLSearchParams({ password }) });
      expect(login.status).toBe(303);
      const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
      const dashboard = await (await fetch(`${base}/admin`, { headers: { cookie } })).text();
      expect(dashboard).toContain('data-stream="smoke"');
      for (const asset of ["htmx.min.js", "sse.min.js", "uPlot.iife.min.js", "admin.css", "admin.js"]) {
        const r = await fetch(`${base}/admin/assets/${asset}`);
        expect(r.status, asset).toBe(200);
        expect((await r.text()).length, asset).toBeGreaterThan(500);
      }

      // For the second start: seal spool segments after 1 s and compact every second.
      const patch = await fetch(`http://127.0.0.1:${server.port}/api/settings`, { method: "PATCH", body: JSON.stringify({ log_segment_seconds: 1, log_compact_seconds: 1 }), headers: await adminHeadersFor(join(dir, "data")) });
      expect(patch.status).toBe(200);
      expect(await server.stop()).toBe(0);
      server = null;
    }, 120_000 * slow);

    it("second start: reuses the unpacked library, compacts the log to Parquet through DuckDB, and `switchyard query` reads it", async () => {
      const before = nativeFiles().map((f) => statSync(f)).map((s) => [s.ino, s.mtimeMs]);
      server = await startBinaryServer(cmd, { cwd: dir, env, args: ["--data-dir", join(dir, "data"), "--udp-port", "0"], timeoutMs: 15_000 * slow });
      expect(server.log()).toMatch(/duckdb native library reused .*checked=hash/);
      expect(server.log()).not.toContain("unpacked");

      const pub = await wsClient(`ws://127.0.0.1:${server.port}/ws/smoke`, 5000 * slow);
      pub.ws.send("after restart 1");
      await Bun.sleep(1200);
      pub.ws.send("after restart 2"); // a write after log_segment_seconds seals the segment
      await poll(() => parquetFiles(join(dir, "data", "logs")).length > 0, "compaction to write Parquet", 30_000 * slow);
      pub.ws.close();
      const rows = await query(server.port, "SELECT count(*)::INT AS n FROM messages", join(dir, "data"));
      expect(rows).toEqual([{ n: 4 }]);
      expect(await server.stop()).toBe(0);
      server = null;

      const q = Bun.spawnSync([...cmd, "query", "SELECT seq::INT AS seq, data FROM messages ORDER BY seq", "--format", "json", "--data-dir", join(dir, "data")], { cwd: dir, env });
      expect({ code: q.exitCode, err: q.stderr.toString() }).toEqual({ code: 0, err: "" });
      expect((JSON.parse(q.stdout.toString()) as { data: string }[]).map((r) => r.data)).toEqual(["hello over websocket", '{"stream":"smoke","v":42}', "after restart 1", "after restart 2"]);

      const after = nativeFiles().map((f) => statSync(f)).map((s) => [s.ino, s.mtimeMs]);
      expect(after).toEqual(before);
      expect(readdirSync(cacheDir())).toHaveLength(1);
    }, 120_000 * slow);

    it("without a usable folder for DuckDB it says so, and the hub still serves", async () => {
      const bad = { ...env, SWITCHYARD_NATIVE_DIR: "/dev/null/nowhere" };
      const v = Bun.spawnSync([...cmd, "version"], { cwd: dir, env: bad });
      expect(v.exitCode).toBe(0);
      expect(v.stdout.toString()).toMatch(/duckdb not available\)\nduckdb: cannot create \/dev\/null\/nowhere\/duckdb-.* set SWITCHYARD_NATIVE_DIR to a writable folder\n$/);
      server = await startBinaryServer(cmd, { cwd: dir, env: bad, args: ["--data-dir", join(dir, "data-2"), "--udp-port", "0"], timeoutMs: 15_000 * slow });
      expect(server.log()).toContain("WARN  DuckDB is not available: queries, history from the log and compaction will fail");
      expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
      await expect(query(server.port, "SELECT 1", join(dir, "data-2"))).rejects.toThrow(/DuckDB is not available: cannot create/);
      expect(await server.stop()).toBe(0);
      server = null;
    }, 60_000 * slow);

    it("`switchyard version` names the version, commit, platform, Bun and the DuckDB inside", () => {
      const r = Bun.spawnSync([...cmd, "version", "--json"], { cwd: dir, env });
      expect(r.exitCode).toBe(0);
      const v = JSON.parse(r.stdout.toString());
      expect(v).toMatchObject({ version: expect.stringMatching(/^\d+\.\d+\.\d+/), platform: platform, bun: Bun.version, duckdb: expect.stringMatching(/^v\d+\.\d+\.\d+/) });
      expect(v.commit).toMatch(/^[0-9a-f]{7,}/);
      expect(v.duckdb_source).toContain(cacheDir());
      const text = Bun.spawnSync([...cmd, "version"], { cwd: dir, env }).stdout.toString();
      expect(text).toMatch(new RegExp(`^switchyard \\d+\\.\\d+\\.\\d+ \\(commit [0-9a-f]{7,}\\S*, ${platform}, bun ${Bun.version.replaceAll(".", "\\.")}, duckdb v\\d`));
    }, 60_000 * slow);
  });
}

describe("dist/SHA256SUMS", () => {
  const sums = join(DIST, "SHA256SUMS");
  if (!existsSync(sums)) {
    if (process.env.CI) it("exists", () => { throw new Error(`${sums} is missing: run npm run build first (CI is set, so this is a failure)`); });
    else it.skip(`(skipped: ${sums} is missing; run npm run build)`, () => {});
    return;
  }
  it("lists both binaries and install.sh, with their SHA-256", () => {
    const lines = readFileSync(sums, "utf8").trim().split("\n").map((l) => l.split(/\s+\*?/));
    expect(lines.map(([, name]) => name).sort()).toEqual(["install.sh", "switchyard-linux-arm64", "switchyard-linux-x64"]);
    for (const [hash, name] of lines) expect(createHash("sha256").update(readFileSync(join(DIST, name!))).digest("hex")).toBe(hash!);
  });
});
