import { afterAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { verifyStreamToken } from "../app/auth/stream-token.ts";
import { SettingsStore } from "../app/config/store.ts";
import { TOKEN_SECRET_NAME } from "../app/server.ts";
import { cli, spawnServe } from "./support/cli.ts";
import { connect } from "./support/client.ts";
import { tempDir } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

const tmp = tempDir();
afterAll(() => tmp.remove());


describe("the switchyard CLI", () => {
  it.each([
    [["serve", "--colour", "red"], "Unknown option '--colour'"],
    [["serve", "--port", "eighty"], '--port: "eighty" is not a port'],
    [["frobnicate"], 'unknown command "frobnicate"'],
    [["token"], "--stream is required"],
    [["token", "--stream", "s", "--scopes", "read,delete"], "allowed: a comma-separated list of read, write"],
    [["token", "--stream", "s", "--ttl", "forever"], "is not a duration"],
    [["token", "--stream", "bad name"], "allowed"],
    [["serve", "--udp", "9001=:raw"], "--udp: \"9001=:raw\": format raw needs a stream"],
    [["serve", "--udp", "spin30"], "allowed: PORT=STREAM[:FORMAT]"],
    [["send"], "--udp [HOST:PORT]"],
    [["send", "--udp", "host:99999"], "is not an address; allowed: HOST:PORT"],
    [["send", "--udp", "--format", "csv"], "allowed: json, line, raw"],
    [["send", "--udp", "--stream", "a b"], "send: --stream: stream name"],
  ])("exits 2 with a clear message for %p", async (args, message) => {
    const r = await cli(args[0] === "send" ? args : [...args, "--data-dir", tmp.dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe("");
  });

  it("prints usage for --help and for COMMAND --help", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    for (const c of ["serve", "send", "token", "version", "check-config"]) expect(top.stdout).toContain(c);
    const serve = await cli(["serve", "--help"]);
    expect(serve.code).toBe(0);
    expect(serve.stdout).toContain("--data-dir");
    expect(serve.stdout).toContain("SWITCHYARD_PORT");
  });

  it("prints the version", async () => {
    const r = await cli(["version", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ version: expect.stringMatching(/^\d+\.\d+\.\d+/), bun: Bun.version, platform: `${process.platform}-${process.arch}` });
  });

  it("check-config shows values with their sources and warns of unknown variables", async () => {
    const r = await cli(["check-config", "--data-dir", tmp.dir], { SWITCHYARD_PORT: "9999", SWITCHYARD_BOGUS: "1" });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/port\s+9999\s+\(env\)/);
    expect(r.stdout).toContain("warning: unknown environment variable SWITCHYARD_BOGUS");
    expect(r.stdout).toContain("backpressure_policy");
    const bad = await cli(["check-config"], { SWITCHYARD_UDP_PORT: "-1" });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("SWITCHYARD_UDP_PORT");
  });

  it("token prints a token signed with the data dir's secret", async () => {
    const r = await cli(["token", "--stream", "spin30", "--scopes", "read", "--ttl", "1h", "--audience", "https://relay.example.org", "--data-dir", tmp.dir]);
    expect(r.code).toBe(0);
    expect(r.stdout.endsWith("\n")).toBe(true);
    const store = SettingsStore.open(tmp.dir);
    const secret = store.secret(TOKEN_SECRET_NAME, () => "none");
    store.close();
    const claims = await verifyStreamToken(secret, r.stdout.trim(), "https://relay.example.org");
    expect(claims).toMatchObject({ topic: "spin30", scopes: ["read"], aud: ["https://relay.example.org"] });
    expect(claims.exp - claims.iat).toBe(3600);
  });

  it("serve exits 1 with a clear message when its port is taken", async () => {
    const taken = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("busy") });
    const dir = tempDir();
    try {
      const r = await cli(["serve", "--data-dir", dir.dir, "--host", "127.0.0.1", "--port", String(taken.port), "--udp-port", "0"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${taken.port}`);
    } finally {
      taken.stop(true);
      dir.remove();
    }
  });

  it("serve runs until SIGTERM, closes clients with 1001, and exits 0", async () => {
    const dir = tempDir();
    try {
      const { p, port, log, reader } = await spawnServe(dir.dir);
      expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).toMatchObject({ status: "ok" });
      const c = await connect(`ws://127.0.0.1:${port}/ws/spin30`);
      p.kill("SIGTERM");
      expect(await c.closed).toEqual({ code: 1001, reason: "server shutting down" });
      expect(await p.exited).toBe(0);
      await reader;
      expect(log()).toContain("shutting down signal=SIGTERM");
    } finally {
      dir.remove();
    }
  });
});
