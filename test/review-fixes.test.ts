import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { closeSync } from "node:fs";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { silentLogger } from "../app/core/logger.ts";
import { Spool } from "../app/log/spool.ts";
import { connect } from "./support/client.ts";
import { startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

// Real servers and sockets: more than Bun's 5 s default on a busy machine.
setDefaultTimeout(60_000);

let srv: TestServer;
afterEach(async () => { await srv?.close(); });

describe("a reverse proxy on the same box does not make its clients local", () => {
  it("refuses admin routes and free stream access to requests that came through a proxy", async () => {
    srv = await startTestServer();
    const local = { server: { requestIP: () => ({ address: "127.0.0.1", port: 4000, family: "IPv4" as const }) } };
    expect((await srv.app.request("/api/destinations/all", {}, local)).status).toBe(200);
    for (const h of ["X-Forwarded-For", "X-Real-IP", "Forwarded"]) {
      const r = await srv.app.request("/api/destinations/all", { headers: { [h]: "203.0.113.9" } }, local);
      expect(r.status).toBe(401);
    }
    const proxied = await connect(srv.wsUrl("spin30"), undefined, { "X-Forwarded-For": "203.0.113.9" });
    const closed = await proxied.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain("a token is required");
  });
});

describe("what a token may see", () => {
  it("/metrics shows only the streams the token covers, and needs a token where the policy does", async () => {
    srv = await startTestServer({ access: "token" });
    const writer = await signStreamToken(srv.secret, { topic: "*", scopes: ["write"], ttlSeconds: 60 });
    for (const s of ["a1", "b1"]) await fetch(`${srv.url}/api/streams/${s}/messages?token=${writer}`, { method: "POST", body: "x" });
    expect((await fetch(`${srv.url}/metrics`)).status).toBe(401);
    const readA = await signStreamToken(srv.secret, { topic: "a*", scopes: ["read"], ttlSeconds: 60 });
    const text = await (await fetch(`${srv.url}/metrics`, { headers: { Authorization: `Bearer ${readA}` } })).text();
    expect(text).toContain('switchyard_stream_messages_in_total{stream="a1"} 1');
    expect(text).not.toContain('stream="b1"');
  });

  it("$streams needs the read scope", async () => {
    srv = await startTestServer({ access: "token" });
    const admin = await signStreamToken(srv.secret, { topic: "*", scopes: ["admin"], ttlSeconds: 60 });
    const c = await connect(srv.wsUrl("$streams", `token=${admin}`));
    expect(await c.closed).toEqual({ code: 1008, reason: "$streams needs the 'read' scope" });
  });
});

describe("the spool on a failing disk", () => {
  it("rejects durable() when a write fails, instead of acknowledging", async () => {
    const tmp = tempDir();
    const spool = Spool.open(tmp.dir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 50, logger: silentLogger });
    spool.append({ stream: "s", ts: 1, seq: 1, origin: "t", data: "ok", size: 2 });
    await spool.durable();
    // Pull the file out from under it: the next write fails (EBADF), as on an I/O error.
    closeSync((spool as unknown as { fd: number }).fd);
    spool.append({ stream: "s", ts: 2, seq: 2, origin: "t", data: "lost", size: 4 });
    await expect(spool.durable()).rejects.toThrow("the log could not write it");
    expect(spool.stats.writeErrors).toBeGreaterThan(0);
    tmp.remove();
  });
});

describe("destinations changed twice at once", () => {
  it("ends with one running destination for the id, the last one posted", async () => {
    srv = await startTestServer();
    const post = (n: number) => fetch(`${srv.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "0", stream: "s", destination: `ws://127.0.0.1:9/ws/t${n}`, token: "" }) });
    await Promise.all([post(1), post(2), post(3)]);
    const all = await (await fetch(`${srv.url}/api/destinations/all`)).json();
    expect(Object.keys(all)).toEqual(["0"]);
    expect(srv.destinations.list()).toHaveLength(1);
    expect(srv.destinations.list()[0]!.rule.destination).toBe(all["0"].destination);
  });
});

describe("publisher counts", () => {
  it("does not count a client whose first message was refused", async () => {
    srv = await startTestServer({ max_message_bytes: 10, stream_linger_seconds: 60 });
    const keep = await connect(srv.wsUrl("s"));
    const c = await connect(srv.wsUrl("s"));
    c.ws.send("x".repeat(11));
    expect((await c.closed).code).toBe(1009);
    await waitFor(() => srv.hub.stream("s")!.connections.size === 1, "the refused client to leave");
    expect(srv.hub.stream("s")!.publishers).toBe(0);
    keep.close();
  });
});

describe("runtime settings over the API", () => {
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

describe("JSON bodies of the API", () => {
  it("answers 400 naming what to send for a body that is JSON but not an object, on every route that takes one", async () => {
    srv = await startTestServer();
    for (const [method, path] of [["PUT", "/api/slack"], ["POST", "/api/query"], ["PATCH", "/api/settings"], ["POST", "/api/destinations"], ["POST", "/api/streams"]]) {
      const r = await fetch(`${srv.url}${path}`, { method, body: "null", headers: srv.adminHeaders });
      expect(r.status).toBe(400);
      expect((await r.json()).error.message).toStartWith("the body must be a JSON object; send ");
    }
  });
});
