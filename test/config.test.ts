import { Database } from "bun:sqlite";
import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { migrate } from "../app/config/migrate.ts";
import { MIGRATIONS } from "../app/config/migrations/index.ts";
import { DEFAULT_SETTINGS } from "../app/config/settings.ts";
import { resolveStartupConfig } from "../app/config/startup.ts";
import { SETTINGS_FILE, SettingsStore } from "../app/config/store.ts";
import { InvalidInput, UsageError } from "../app/core/errors.ts";
import { streamNameProblem } from "../app/core/stream-name.ts";
import { connect } from "./support/client.ts";
import { startTestServer, tempDir, type TestServer } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

describe("startup config", () => {
  it("takes flags over env over defaults, and says where each value came from", () => {
    const r = resolveStartupConfig({ port: "9000" }, { SWITCHYARD_PORT: "9100", SWITCHYARD_UDP_PORT: "9101" });
    expect(r.config.port).toBe(9000);
    expect(r.config.udpPort).toBe(9101);
    expect(r.config.host).toBe("0.0.0.0");
    expect(r.sources).toMatchObject({ port: "flag", udpPort: "env", host: "default" });
    expect(r.config.dataDir.startsWith("/")).toBe(true);
  });

  it.each([
    [{ port: "http" }, {}, "--port: \"http\" is not a port; allowed: a whole number from 0 to 65535"],
    [{ port: "70000" }, {}, "--port"],
    [{}, { SWITCHYARD_LOG_LEVEL: "loud" }, "SWITCHYARD_LOG_LEVEL: \"loud\" is not a log level; allowed: debug, info, warn, error"],
  ])("refuses a bad value with what is allowed (%p %p)", (flags, env, message) => {
    expect(() => resolveStartupConfig(flags, env)).toThrow(UsageError);
    expect(() => resolveStartupConfig(flags, env)).toThrow(message);
  });

  it("reports unknown SWITCHYARD_* variables", () => {
    const r = resolveStartupConfig({}, { SWITCHYARD_PROT: "1", SWITCHYARD_PORT: "1", PATH: "/bin" });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toContain("unknown environment variable SWITCHYARD_PROT");
  });
});

describe("stream names", () => {
  it.each(["spin30", "a/b/c", "Lab-1/cam_0.raw", "x".repeat(200), `${"ab/".repeat(24)}${"x".repeat(128)}`])("accepts %s", (n) => expect(streamNameProblem(n)).toBeNull());
  it.each(["", "/a", "a/", "a//b", ".hidden", "a b", "ü", "$streams", "x".repeat(201), `${"a/".repeat(99)}a`, `${"ab/".repeat(25)}${"x".repeat(125)}`])("refuses %p", (n) => expect(streamNameProblem(n)).toContain("allowed"));
});

describe("settings store", () => {
  const tmp = tempDir();
  afterEach(() => tmp.remove());

  it("applies migrations once, keeps settings across reopen, and refuses bad values field by field", () => {
    const store = SettingsStore.open(tmp.dir);
    expect(store.appliedMigrations).toEqual(MIGRATIONS.map((m) => m.id));
    expect(store.settings).toEqual(DEFAULT_SETTINGS);
    const seen: string[] = [];
    store.onChange((next, prev) => seen.push(`${prev.access}->${next.access}`));
    store.update({ access: "token", max_connections: 5 });
    expect(seen).toEqual(["loopback-open->token"]);
    let err: unknown;
    try { store.update({ access: "everyone", max_connections: -1, colour: "red" }); } catch (e) { err = e; }
    // A domain error, not an HTTP one: the API maps it to a 400 (the settings API test below).
    expect(err).toBeInstanceOf(InvalidInput);
    expect((err as InvalidInput).fields).toMatchObject({ access: expect.stringContaining("allowed: open, loopback-open, token"), max_connections: expect.stringContaining("whole number"), colour: expect.stringContaining("unknown setting") });
    expect(store.settings.access).toBe("token");
    const s1 = store.secret("k", () => "first");
    expect(store.secret("k", () => "second")).toBe(s1);
    store.close();

    const again = SettingsStore.open(tmp.dir);
    expect(again.appliedMigrations).toEqual([]);
    expect(again.settings).toMatchObject({ access: "token", max_connections: 5 });
    expect(again.secret("k", () => "third")).toBe("first");
    again.close();
    const db = new Database(join(tmp.dir, SETTINGS_FILE));
    expect(db.query("SELECT id FROM _migrations ORDER BY id").all()).toEqual(MIGRATIONS.map((m) => ({ id: m.id })));
    db.close();
  });

  it("checks the UDP settings, also against each other", () => {
    const store = SettingsStore.open(tmp.dir);
    const fields = (patch: Record<string, unknown>) => {
      try { store.update(patch); } catch (e) { return (e as InvalidInput).fields!; }
      return null;
    };
    expect(fields({ udp_format: "csv" })).toMatchObject({ udp_format: expect.stringContaining("allowed: json, line, raw, text") });
    expect(fields({ udp_format: "raw" })).toMatchObject({ udp_stream: expect.stringContaining("required when udp_format is raw") });
    expect(fields({ udp_allow: ["spin*", "bad pattern"] })).toMatchObject({ udp_allow: expect.stringContaining("allowed: stream-name characters") });
    expect(fields({ udp_listeners: [{ port: 9001, format: "raw" }] })).toMatchObject({ udp_listeners: expect.stringContaining("needs a stream") });
    expect(fields({ udp_listeners: [{ port: 9001, format: "raw", stream: "a" }, { port: 9001, format: "text", stream: "b" }] })).toMatchObject({ udp_listeners: expect.stringContaining("port 9001 is listed twice") });
    expect(fields({ udp_max_datagram_bytes: 70000 })).toMatchObject({ udp_max_datagram_bytes: expect.stringContaining("1 to 65536") });
    expect(fields({ udp_format: "raw", udp_stream: "spin30", udp_allow: ["spin*"] })).toBeNull();
    expect(store.settings).toMatchObject({ udp_format: "raw", udp_stream: "spin30" });
    store.close();
  });

  it("runs a new migration after the existing ones, in a transaction that rolls back on failure", () => {
    const db = new Database(":memory:");
    migrate(db);
    const failing = { id: "20991231_000000_broken", up: (d: Database) => { d.run("CREATE TABLE half (x)"); throw new Error("boom"); } };
    expect(() => migrate(db, [failing])).toThrow("boom");
    expect(db.query("SELECT name FROM sqlite_master WHERE name = 'half'").all()).toEqual([]);
    expect(migrate(db, [{ id: "20991231_000001_ok", up: (d) => d.run("CREATE TABLE ok (x)") }])).toEqual(["20991231_000001_ok"]);
  });
});

describe("runtime settings over the API", () => {
  let srv: TestServer;
  afterEach(async () => { await srv?.close(); });

  it("shows the settings, changes them live, says which need a restart, and refuses bad ones field by field", async () => {
    srv = await startTestServer();
    const view = await (await fetch(`${srv.url}/api/settings`, { headers: srv.adminHeaders })).json();
    expect(view.settings.access).toBe("loopback-open");
    expect(view.fields.keepalive_seconds.restart).toBe(true);
    const patch = (body: unknown) => fetch(`${srv.url}/api/settings`, { method: "PATCH", body: JSON.stringify(body), headers: srv.adminHeaders });
    const r = await (await patch({ max_connections: 1, keepalive_seconds: 30 })).json();
    expect(r.changed.sort()).toEqual(["keepalive_seconds", "max_connections"]);
    expect(r.restart_needed).toEqual(["keepalive_seconds"]);
    // Applied live: a second connection is now one too many.
    const a = await connect(srv.wsUrl("s"));
    const b = await connect(srv.wsUrl("s"));
    expect((await b.closed).code).toBe(1013);
    a.close();
    const bad = await patch({ access: "everyone", max_connections: 0 });
    expect(bad.status).toBe(400);
    const err = (await bad.json()).error;
    expect(Object.keys(err.data.fields).sort()).toEqual(["access", "max_connections"]);
    expect(err.message).toContain("allowed: open, loopback-open, token");
    expect(srv.store.settings.max_connections).toBe(1);
  });
});
