import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { connect } from "./support/client.ts";
import { startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";
import { bootScript } from "./support/practable.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

const FAST = { baseMs: 100, maxMs: 400 };
const servers: TestServer[] = [];
async function server(...args: Parameters<typeof startTestServer>) {
  const s = await startTestServer(args[0], { backoff: FAST, ...args[1] });
  servers.push(s);
  return s;
}
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => {});
});

/** A relay token as practable's configure script makes: topic NAME-KIND, audience the relay's access URL. */
const relayToken = (relay: TestServer, topic: string, opts: { scopes?: string[]; ttl?: number; audience?: string; now?: number } = {}) =>
  signStreamToken(relay.secret, { topic, scopes: opts.scopes ?? ["read", "write"], ttlSeconds: opts.ttl ?? 31_536_000, audience: opts.audience ?? relay.url, nowSeconds: opts.now });

const api = (srv: TestServer, path: string, init?: RequestInit) => fetch(`${srv.url}${path}`, init);
const postRule = (srv: TestServer, rule: Record<string, unknown>) =>
  api(srv, "/api/destinations", { method: "POST", body: JSON.stringify(rule), headers: { "Content-Type": "application/json" } });

describe("relay: destinations to a remote relay", () => {
  it("runs the practable boot script unchanged (curl) and relays the stream", async () => {
    const relay = await server({ public_url: "" });
    const host = await server();
    const token = await relayToken(relay, "spin30-log");
    const watcher = await connect(relay.wsUrl("spin30-log"));
    const boot = await bootScript(host.port, { spin30Access: `${relay.url}/session/spin30-log`, spin30Token: token });
    expect(boot.code).toBe(0);
    const [posted, all] = [JSON.parse(boot.posted), JSON.parse(boot.all)];
    expect(posted).toMatchObject({ id: "0", stream: "spin30", destination: `${relay.url}/session/spin30-log`, token: "<redacted>", file: "" });
    expect(Object.keys(all)).toEqual(["0"]);
    expect(all["0"]).toMatchObject({ id: "0", stream: "spin30", token: "<redacted>", file: "" });
    expect(JSON.stringify(all)).not.toContain(token);
    await waitFor(async () => (await (await api(host, "/api/destinations/0")).json()).status.state === "connected", "the destination to connect");
    const pub = await connect(host.wsUrl("spin30"));
    pub.ws.send("reading 1");
    pub.ws.send(new Uint8Array([1, 2, 3]));
    const got = await watcher.received(2);
    expect(got[0]).toBe("reading 1");
    expect([...(got[1] as Uint8Array)]).toEqual([1, 2, 3]);
    const status = (await (await api(host, "/api/destinations/0")).json()).status;
    expect(status).toMatchObject({ state: "connected", connects: 1, messages_out: 2, bytes_out: 12, dropped: 0 });
    const metrics = await (await api(host, "/metrics")).text();
    expect(metrics).toContain('switchyard_destination_connected{id="0",stream="spin30"} 1');
    expect(metrics).toContain('switchyard_destination_messages_out_total{id="0",stream="spin30"} 2');
  });

  it("passes messages both ways between two Switchyards, without echo", async () => {
    const relay = await server();
    const host = await server();
    await postRule(host, { id: "a", stream: "spin31", destination: `${relay.url}/session/spin31-data`, token: await relayToken(relay, "spin31-data") });
    await waitFor(async () => relay.hub.stream("spin31-data")?.connections.size === 1, "the session on the relay");
    const local = await connect(host.wsUrl("spin31"));
    const remote = await connect(relay.wsUrl("spin31-data"));
    local.ws.send("from the lab");
    expect(await remote.received(1)).toEqual(["from the lab"]);
    remote.ws.send("from the centre");
    expect(await local.received(1)).toEqual(["from the centre"]);
    await Bun.sleep(200);
    // Each side got exactly one message: nothing came back round.
    expect(remote.messages).toEqual(["from the lab"]);
    expect(local.messages).toEqual(["from the centre"]);
    expect(host.hub.stream("spin31")!.messagesIn).toBe(2);
    expect(relay.hub.stream("spin31-data")!.messagesIn).toBe(2);
    const seen: string[] = [];
    host.hub.onMessage((m) => seen.push(m.origin));
    remote.ws.send("again");
    await local.received(2);
    expect(seen).toEqual(["relay:a"]);
  });

  it("dials a ws:// destination directly when the rule has no token", async () => {
    const relay = await server();
    const host = await server();
    await postRule(host, { id: "direct", stream: "cam", destination: relay.wsUrl("cam-copy"), token: "" });
    const far = await connect(relay.wsUrl("cam-copy"));
    await waitFor(async () => relay.hub.stream("cam-copy")?.connections.size === 2, "the direct connection");
    const near = await connect(host.wsUrl("cam"));
    near.ws.send("frame");
    expect(await far.received(1)).toEqual(["frame"]);
  });

  it("reconnects when the remote goes down and comes back, with the failure in its status and nothing duplicated", async () => {
    const relayDir = tempDir();
    let relay = await startTestServer({}, { dataDir: relayDir.dir });
    const port = relay.port;
    const host = await server();
    await postRule(host, { id: "0", stream: "spin30", destination: `${relay.url}/session/spin30-log`, token: await relayToken(relay, "spin30-log") });
    const pub = await connect(host.wsUrl("spin30"));
    let watcher = await connect(relay.wsUrl("spin30-log"));
    await waitFor(async () => (await (await api(host, "/api/destinations/0")).json()).status.state === "connected", "connected");
    pub.ws.send("before");
    expect(await watcher.received(1)).toEqual(["before"]);
    await relay.stop();
    relay.store.close();
    await waitFor(async () => (await (await api(host, "/api/destinations/0")).json()).status.state === "backing-off", "backing off");
    const down = (await (await api(host, "/api/destinations/0")).json()).status;
    expect(down.last_error).toMatch(/access request .* failed|closed with/);
    pub.ws.send("while down"); // dropped, and counted
    await waitFor(async () => (await (await api(host, "/api/destinations/0")).json()).status.dropped >= 1, "the drop to be counted");
    relay = await startTestServer({}, { dataDir: relayDir.dir, port });
    servers.push(relay);
    watcher = await connect(relay.wsUrl("spin30-log"));
    await waitFor(async () => (await (await api(host, "/api/destinations/0")).json()).status.state === "connected", "connected again", 10_000);
    pub.ws.send("after");
    expect(await watcher.received(1)).toEqual(["after"]);
    await Bun.sleep(200);
    expect(watcher.messages).toEqual(["after"]);
    const status = (await (await api(host, "/api/destinations/0")).json()).status;
    expect(status.connects).toBe(2);
    expect(status.messages_out).toBe(2);
  });

  it("replaces a rule while traffic flows: the old connection closes, the new one carries on", async () => {
    const relay = await server();
    const host = await server();
    await postRule(host, { id: "0", stream: "spin30", destination: `${relay.url}/session/old-topic`, token: await relayToken(relay, "old-topic") });
    const oldSide = await connect(relay.wsUrl("old-topic"));
    const newSide = await connect(relay.wsUrl("new-topic"));
    await waitFor(async () => relay.hub.stream("old-topic")?.connections.size === 2, "first session");
    const pub = await connect(host.wsUrl("spin30"));
    let sending = true;
    let n = 0;
    const sender = (async () => { while (sending) { pub.ws.send(`m${n++}`); await Bun.sleep(2); } })();
    await Bun.sleep(100);
    const newRule = { id: "0", stream: "spin30", destination: `${relay.url}/session/new-topic`, token: await relayToken(relay, "new-topic") };
    const r = await postRule(host, newRule);
    expect((await r.json()).destination).toBe(`${relay.url}/session/new-topic`);
    await waitFor(() => relay.hub.stream("old-topic")?.connections.size === 1, "the old session to close");
    await waitFor(() => newSide.messages.length >= 20, "traffic on the new session");
    sending = false;
    await sender;
    expect(oldSide.messages.length).toBeGreaterThan(0);
    const nums = (m: (string | Uint8Array)[]) => m.map((x) => Number((x as string).slice(1)));
    // Each side saw an increasing run; no message went to both.
    const a = nums(oldSide.messages), b = nums(newSide.messages);
    expect(a).toEqual([...a].sort((x, y) => x - y));
    expect(b).toEqual([...b].sort((x, y) => x - y));
    expect(a.filter((x) => b.includes(x))).toEqual([]);
    // Posting the very same rule again is harmless: no new connection.
    const connects = (await (await api(host, "/api/destinations/0")).json()).status.connects;
    await postRule(host, newRule);
    await Bun.sleep(200);
    expect((await (await api(host, "/api/destinations/0")).json()).status.connects).toBe(connects);
  });

  it("keeps rules across a restart", async () => {
    const relay = await server();
    const dir = tempDir();
    try {
      let host = await startTestServer({}, { dataDir: dir.dir, backoff: FAST });
      await postRule(host, { id: "keep/me", stream: "spin30", destination: `${relay.url}/session/spin30-log`, token: await relayToken(relay, "spin30-log") });
      await host.stop();
      host.store.close();
      host = await startTestServer({}, { dataDir: dir.dir, backoff: FAST });
      servers.push(host);
      const all = await (await api(host, "/api/destinations/all")).json();
      expect(Object.keys(all)).toEqual(["keep/me"]);
      await waitFor(async () => (await (await api(host, "/api/destinations/keep/me")).json()).status.state === "connected", "reconnect after restart");
      const watcher = await connect(relay.wsUrl("spin30-log"));
      const pub = await connect(host.wsUrl("spin30"));
      pub.ws.send("still here");
      expect(await watcher.received(1)).toEqual(["still here"]);
    } finally {
      dir.remove();
    }
  });

  it("records what it sends to the rule's file under the data dir: raw bytes back to back by default, one per line on request", async () => {
    const relay = await server();
    const host = await server();
    await postRule(host, { id: "raw", stream: "spin31", destination: relay.wsUrl("copy31"), token: "", file: "spin31.bin" });
    await waitFor(() => relay.hub.stream("copy31")?.connections.size === 1, "connected");
    const pub31 = await connect(host.wsUrl("spin31"));
    pub31.ws.send("ab");
    pub31.ws.send(new Uint8Array([255, 0]));
    pub31.ws.send("c");
    const rawFile = join(host.dataDir, "records", "spin31.bin");
    await waitFor(() => existsSync(rawFile) && readFileSync(rawFile).length === 5, "the raw record file");
    expect([...readFileSync(rawFile)]).toEqual([97, 98, 255, 0, 99]);
    await postRule(host, { id: "rec", stream: "spin30", destination: relay.wsUrl("copy"), token: "", file: "spin30.log", record_format: "lines" });
    await waitFor(() => relay.hub.stream("copy")?.connections.size === 1, "connected");
    const pub = await connect(host.wsUrl("spin30"));
    pub.ws.send("line one");
    pub.ws.send(new Uint8Array([255, 0]));
    const file = join(host.dataDir, "records", "spin30.log");
    await waitFor(() => existsSync(file) && readFileSync(file, "utf8").split("\n").length === 3, "the record file");
    expect(readFileSync(file, "utf8")).toBe(`line one\n${Buffer.from([255, 0]).toString("base64")}\n`);
    const outside = await postRule(host, { id: "bad", stream: "s", destination: relay.wsUrl("x"), file: "../../etc/cron.d/x" });
    expect(outside.status).toBe(400);
    const format = await postRule(host, { id: "bad", stream: "s", destination: relay.wsUrl("x"), file: "x", record_format: "csv" });
    expect((await format.json()).error.data.fields.record_format).toBe('"csv" is not valid; allowed: raw, lines');
  });

  it("answers bad rules with 400 naming each field, and practable's shapes for the rest", async () => {
    const host = await server();
    const bad = await postRule(host, { id: "no spaces", stream: "bad name", destination: "ftp://x", token: "", colour: 1 });
    expect(bad.status).toBe(400);
    const body = await bad.json();
    // Unknown fields are ignored (practable ignores them), so only the real problems are named.
    expect(Object.keys(body.error.data.fields).sort()).toEqual(["destination", "id", "stream"]);
    expect(body.error.data.fields.destination).toContain("ws:// or wss://");
    const notJson = await api(host, "/api/destinations", { method: "POST", body: "{oops" });
    expect(notJson.status).toBe(400);
    expect(await (await api(host, "/api/destinations/all")).json()).toEqual({});
    const del = await api(host, "/api/destinations/7", { method: "DELETE" });
    expect(del.status).toBe(200);
    expect(await del.json()).toBe("7");
    expect((await api(host, "/api/destinations/7")).status).toBe(404);
    expect(await (await api(host, "/healthcheck")).json()).toBe("ok");
    const put = await api(host, "/api/destinations", { method: "PUT", body: JSON.stringify({ id: "1", stream: "/spin30", destination: "ws://127.0.0.1:9/ws/x", token: "" }) });
    expect((await put.json()).stream).toBe("spin30");
    const put2 = await api(host, "/api/destinations", { method: "PUT", body: JSON.stringify({ id: "2", stream: "spin30", destination: "ws://127.0.0.1:9/ws/x", token: "" }) });
    expect(put2.status).toBe(200);
    const delAll = await api(host, "/api/destinations/all", { method: "DELETE" });
    expect(await delAll.json()).toBe("all");
    expect(await (await api(host, "/api/destinations/all")).json()).toEqual({});
    // practable's own delete-everything route, and its answer.
    await api(host, "/api/destinations", { method: "PUT", body: JSON.stringify({ id: "3", stream: "spin30", destination: "ws://127.0.0.1:9/ws/x", token: "" }) });
    const deleteAll = await api(host, "/api/destinations/deleteAll", { method: "DELETE" });
    expect(await deleteAll.json()).toBe("deleteAll");
    expect(await (await api(host, "/api/destinations/all")).json()).toEqual({});
    for (const id of ["deleteAll", "all"]) {
      const reserved = await postRule(host, { id, stream: "spin30", destination: "ws://127.0.0.1:9/ws/x", token: "" });
      expect(reserved.status).toBe(400);
      expect((await reserved.json()).error.data.fields.id).toContain("reserved");
    }
  });

  it("takes back a rule read with GET: read-only fields ignored, the redaction marker keeps the stored token, unknown fields ignored with a warning", async () => {
    const relay = await server();
    const host = await server();
    const token = await relayToken(relay, "spin30-log");
    expect((await postRule(host, { id: "0", stream: "spin30", destination: `${relay.url}/session/spin30-log`, token })).status).toBe(200);
    await waitFor(async () => (await (await api(host, "/api/destinations/0")).json()).status.state === "connected", "the destination to connect");
    const read = await (await api(host, "/api/destinations/0")).json();
    expect(read.token).toBe("<redacted>");
    expect(read.status).toBeDefined();
    const back = await postRule(host, read);
    expect(back.status).toBe(200);
    expect((await back.json()).warnings).toBeUndefined();
    // The stored token is still the real one: the same rule, left running (no reconnect).
    expect(host.destinations.get("0")!.rule.token).toBe(token);
    expect((await (await api(host, "/api/destinations/0")).json()).status.connects).toBe(1);
    // The whole /all answer, one rule at a time, posts back too.
    const all = await (await api(host, "/api/destinations/all")).json();
    expect((await postRule(host, all["0"])).status).toBe(200);
    expect(host.destinations.get("0")!.rule.token).toBe(token);
    // A changed rule keeps the token and reconnects with it.
    const moved = await postRule(host, { ...read, stream: "spin31", colour: "blue", note: 1 });
    expect(moved.status).toBe(200);
    const movedBody = await moved.json();
    expect(movedBody.warnings[0]).toContain('"colour", "note"');
    expect(host.logs.some((l) => l.includes("ignored unknown fields") && l.includes("colour"))).toBe(true);
    expect(host.destinations.get("0")!.rule).toMatchObject({ stream: "spin31", token });
    await waitFor(async () => (await (await api(host, "/api/destinations/0")).json()).status.state === "connected", "the changed rule to connect with the kept token");
    // The marker for a rule with no stored token is an error, never a literal token.
    const orphan = await postRule(host, { ...read, id: "9" });
    expect(orphan.status).toBe(400);
    expect((await orphan.json()).error.data.fields.token).toContain("has none");
    expect(host.destinations.get("9")).toBeUndefined();
  });

  it("asks a client off the box for an admin token; a stream token, even one with scopes [\"admin\"], is not one", async () => {
    const host = await server();
    const remote = { server: { requestIP: () => ({ address: "10.1.2.3", port: 4000, family: "IPv4" as const }) } };
    const r = await host.app.request("/api/destinations/all", {}, remote);
    expect(r.status).toBe(401);
    expect((await r.json()).error.message).toContain("switchyard token --admin");
    for (const scopes of [["read"], ["admin"], ["read", "write", "admin"]]) {
      const device = await signStreamToken(host.secret, { topic: "*", scopes, ttlSeconds: 60 });
      const refused = await host.app.request("/api/destinations/all", { headers: { Authorization: `Bearer ${device}` } }, remote);
      expect(refused.status).toBe(401);
      expect((await refused.json()).error.message).toContain("stream tokens never give admin power");
    }
    expect((await host.app.request("/api/destinations/all", { headers: host.adminHeaders }, remote)).status).toBe(200);
  });
});

describe("relay: Switchyard as the relay (/session/{topic})", () => {
  const access = (relay: TestServer, topic: string, auth?: string) =>
    fetch(`${relay.url}/session/${topic}`, { method: "POST", headers: auth ? { Authorization: auth } : {} });

  it("hands out a single-use code for a good token and joins the local stream with its scopes", async () => {
    const relay = await server();
    const r = await access(relay, "spin30-log", await relayToken(relay, "spin30-log", { scopes: ["read"] }));
    expect(r.status).toBe(200);
    const { uri } = await r.json();
    expect(uri).toMatch(new RegExp(`^ws://127\\.0\\.0\\.1:${relay.port}/session/spin30-log\\?code=[0-9a-f-]{36}$`));
    const reader = await connect(uri);
    const writer = await connect(relay.wsUrl("spin30-log"));
    writer.ws.send("to the reader");
    expect(await reader.received(1)).toEqual(["to the reader"]);
    reader.ws.send("not allowed");
    const closed = await reader.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain("lacks the 'write' scope");
    const reused = await connect(uri);
    const again = await reused.closed;
    expect(again.code).toBe(1008);
    expect(again.reason).toContain("unknown, already used or expired");
  });

  it("refuses missing, bad, expired, wrong-audience and wrong-topic tokens with practable's 401", async () => {
    const relay = await server();
    const none = await access(relay, "spin30-log");
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ code: 401, message: "unauthenticated for invalid credentials" });
    const cases: [string, string][] = [
      ["garbage", "not a well-formed JWT"],
      [await relayToken(relay, "spin30-log", { ttl: 10, now: Date.now() / 1000 - 100 }), "expired"],
      [await relayToken(relay, "spin30-log", { audience: "https://elsewhere.example.org" }), "does not include this server"],
      [await relayToken(relay, "spin31-log"), 'token is for topic "spin31-log"'],
      [await signStreamToken("another-secret", { topic: "spin30-log", scopes: ["read"], ttlSeconds: 60, audience: relay.url }), "signature"],
    ];
    for (const [token, why] of cases) {
      const r = await access(relay, "spin30-log", token);
      expect(r.status).toBe(401);
      expect((await r.json()).detail).toContain(why);
    }
  });

  it("answers browsers from the cors_origins setting with CORS headers, and others without", async () => {
    const relay = await server();
    const token = await relayToken(relay, "spin30-log");
    const preflight = (origin: string) => api(relay, "/session/spin30-log", { method: "OPTIONS", headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization" } });
    // By default no origin is allowed: the browser refuses the cross-origin call.
    expect((await preflight("https://lab.example.org")).headers.get("access-control-allow-origin")).toBeNull();
    relay.store.update({ cors_origins: ["https://lab.example.org"] });
    const ok = await preflight("https://lab.example.org");
    expect(ok.status).toBe(204);
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://lab.example.org");
    expect(ok.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    expect(ok.headers.get("access-control-allow-methods")).toContain("POST");
    expect((await preflight("https://evil.example.com")).headers.get("access-control-allow-origin")).toBeNull();
    const post = await api(relay, "/session/spin30-log", { method: "POST", headers: { Origin: "https://lab.example.org", Authorization: token } });
    expect(post.status).toBe(200);
    expect(post.headers.get("access-control-allow-origin")).toBe("https://lab.example.org");
    expect((await post.json()).uri).toContain("?code=");
    expect(() => relay.store.update({ cors_origins: ["https://lab.example.org/path"] })).toThrow(/scheme and host/);
  });

  it("answers a wss:// session uri when a trusted TLS proxy says https, and ignores the header from anyone else", async () => {
    const relay = await server();
    const token = await relayToken(relay, "spin30-log");
    const uriWith = async (headers: Record<string, string>) =>
      ((await (await api(relay, "/session/spin30-log", { method: "POST", headers: { Authorization: token, Host: "relay.example.org", ...headers } })).json()) as { uri: string }).uri;
    // Not a trusted proxy (the default: none): the header is the client's word, and ignored.
    expect(await uriWith({ "X-Forwarded-Proto": "https" })).toStartWith("ws://relay.example.org/session/spin30-log?code=");
    relay.store.update({ trusted_proxies: ["127.0.0.1", "::1"] });
    expect(await uriWith({ "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7" })).toStartWith("wss://relay.example.org/session/spin30-log?code=");
    expect(await uriWith({ Forwarded: "for=203.0.113.7;proto=https" })).toStartWith("wss://relay.example.org/");
    expect(await uriWith({ "X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.7" })).toStartWith("ws://relay.example.org/");
  });

  it("closes a session with a made-up code or for another topic, with a reason", async () => {
    const relay = await server();
    const made = await connect(`ws://127.0.0.1:${relay.port}/session/spin30-log?code=00000000-0000-0000-0000-000000000000`);
    expect((await made.closed).code).toBe(1008);
    const { uri } = await (await access(relay, "spin30-log", await relayToken(relay, "spin30-log"))).json();
    const other = await connect(uri.replace("spin30-log", "spin31-log"));
    const closed = await other.closed;
    expect(closed).toEqual({ code: 1008, reason: "access code is for topic spin30-log, not spin31-log" });
  });

  it("closes a session when its token expires", async () => {
    const relay = await server();
    const { uri } = await (await access(relay, "spin30-log", await relayToken(relay, "spin30-log", { ttl: 4 }))).json(); // iat is 1 s back: 2–3 s left, time for a loaded machine to connect
    const c = await connect(uri);
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    expect(await c.closed).toEqual({ code: 1008, reason: "token expired" });
  });
});

describe("relay: webhook destinations", () => {
  it("POSTs each message in order, retrying with backoff while the endpoint fails, and reports it", async () => {
    let failuresLeft = 3;
    const received: { body: string; seq: string | null }[] = [];
    const hook = Bun.serve({
      port: 0,
      async fetch(req) {
        const body = await req.text();
        if (failuresLeft > 0) { failuresLeft--; return new Response("busy", { status: 503 }); }
        received.push({ body, seq: req.headers.get("x-switchyard-seq") });
        return new Response("ok");
      },
    });
    try {
      const host = await server();
      const r = await postRule(host, { id: "hook", kind: "webhook", stream: "results", destination: `http://127.0.0.1:${hook.port}/in`, token: "" });
      expect(r.status).toBe(200);
      const pub = await connect(host.wsUrl("results"));
      for (const m of ["r1", "r2", "r3"]) pub.ws.send(m);
      await waitFor(async () => (await (await api(host, "/api/destinations/hook")).json()).status.last_error !== null, "a failure to show");
      expect((await (await api(host, "/api/destinations/hook")).json()).status.last_error).toContain("answered 503");
      await waitFor(() => received.length === 3, "the endpoint to recover", 10_000);
      expect(received).toEqual([{ body: "r1", seq: "1" }, { body: "r2", seq: "2" }, { body: "r3", seq: "3" }]);
      const status = (await (await api(host, "/api/destinations/hook")).json()).status;
      expect(status).toMatchObject({ state: "connected", messages_out: 3, dropped: 0 });
    } finally {
      hook.stop(true);
    }
  });

  it("batches as NDJSON when the rule says so", async () => {
    const bodies: string[] = [];
    const hook = Bun.serve({ port: 0, async fetch(req) { bodies.push(await req.text()); return new Response("ok"); } });
    try {
      const host = await server();
      await postRule(host, { id: "b", kind: "webhook", stream: "results", destination: `http://127.0.0.1:${hook.port}/`, batch: 100 });
      for (let i = 0; i < 5; i++) await api(host, "/api/streams/results/messages", { method: "POST", body: `v${i}`, headers: { "content-type": "text/plain" } });
      await waitFor(() => bodies.join("").split("\n").filter(Boolean).length === 5, "all five");
      const records = bodies.join("").split("\n").filter(Boolean).map((l) => JSON.parse(l));
      expect(records.map((r) => r.data)).toEqual(["v0", "v1", "v2", "v3", "v4"]);
      expect(records[0]).toMatchObject({ stream: "results", seq: 1, kind: "text", origin: "http:127.0.0.1" });
    } finally {
      hook.stop(true);
    }
  });
});

describe("relay: stream feed rules (/api/streams)", () => {
  it("gives clients of a stream every listed feed, and keeps the rule", async () => {
    const srv = await server();
    const r = await api(srv, "/api/streams", { method: "POST", body: JSON.stringify({ stream: "stream/x", feeds: ["video0", "audio0"] }) });
    expect(await r.json()).toEqual({ stream: "stream/x", feeds: ["video0", "audio0"] });
    const viewer = await connect(srv.wsUrl("stream/x"));
    const cam = await connect(srv.wsUrl("video0"));
    const mic = await connect(srv.wsUrl("audio0"));
    cam.ws.send("frame");
    mic.ws.send("sound");
    expect((await viewer.received(2)).sort()).toEqual(["frame", "sound"]);
    // practable's shapes: the map of stream to feeds, and one stream's feeds array.
    expect(await (await api(srv, "/api/streams/all")).json()).toEqual({ "stream/x": ["video0", "audio0"] });
    expect(await (await api(srv, "/api/streams/stream/x")).json()).toEqual(["video0", "audio0"]);
    expect(await (await api(srv, "/api/streams/stream/x", { method: "DELETE" })).json()).toBe("stream/x");
    cam.ws.send("after");
    await Bun.sleep(100);
    expect(viewer.messages).toHaveLength(2);
    // Without a rule the name falls through to the stream's stats.
    expect((await (await api(srv, "/api/streams/video0")).json()).stream).toBe("video0");
    await api(srv, "/api/streams", { method: "POST", body: JSON.stringify({ stream: "stream/y", feeds: ["video0"] }) });
    expect(await (await api(srv, "/api/streams/deleteAll", { method: "DELETE" })).json()).toBe("deleteAll");
    expect(await (await api(srv, "/api/streams/all")).json()).toEqual({});
    const bad = await api(srv, "/api/streams", { method: "PUT", body: JSON.stringify({ stream: "x", feeds: ["bad name"] }) });
    expect(bad.status).toBe(400);
  });
});

describe("relay: a stalled remote", () => {
  it("never stalls the hub: the destination's buffer is bounded and its drops are counted", async () => {
    // A "relay" that completes the websocket handshake and then never reads.
    const { createServer } = await import("node:net");
    const { createHash } = await import("node:crypto");
    const stalled = createServer((sock) => {
      sock.once("data", (d) => {
        const key = /sec-websocket-key: (.+)\r\n/i.exec(d.toString())![1]!.trim();
        const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
        sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        sock.pause();
      });
    });
    await new Promise<void>((r) => stalled.listen(0, "127.0.0.1", r));
    const port = (stalled.address() as { port: number }).port;
    try {
      const host = await server({ relay_buffer_bytes: 256 * 1024 });
      await postRule(host, { id: "slow", stream: "fast", destination: `ws://127.0.0.1:${port}/`, token: "" });
      await waitFor(async () => (await (await api(host, "/api/destinations/slow")).json()).status.state === "connected", "connected to the stalled relay");
      const sub = await connect(host.wsUrl("fast"));
      const pub = await connect(host.wsUrl("fast"));
      const n = 20_000;
      const payload = "z".repeat(1000);
      for (let i = 0; i < n; i++) {
        pub.ws.send(`${i}:${payload}`);
        if (i % 500 === 499) await Bun.sleep(1);
      }
      expect((await sub.received(n, 30_000)).length).toBe(n);
      const status = (await (await api(host, "/api/destinations/slow")).json()).status;
      expect(status.dropped).toBeGreaterThan(0);
      expect(status.messages_out + status.dropped).toBe(n);
      // Removing it returns (the connection is cut after a 2 s grace) even though the remote never answers the close.
      expect(await (await api(host, "/api/destinations/slow", { method: "DELETE" })).json()).toBe("slow");
      expect((await api(host, "/api/destinations/slow")).status).toBe(404);
    } finally {
      stalled.close();
    }
  });
});

describe("destinations changed twice at once", () => {
  it("ends with one running destination for the id, the last one posted", async () => {
    const srv = await server();
    const post = (n: number) => fetch(`${srv.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "0", stream: "s", destination: `ws://127.0.0.1:9/ws/t${n}`, token: "" }) });
    await Promise.all([post(1), post(2), post(3)]);
    const all = await (await fetch(`${srv.url}/api/destinations/all`)).json();
    expect(Object.keys(all)).toEqual(["0"]);
    expect(srv.destinations.list()).toHaveLength(1);
    expect(srv.destinations.list()[0]!.rule.destination).toBe(all["0"].destination);
  });
});
