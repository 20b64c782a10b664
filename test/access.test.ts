import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { authorizeStream, AccessDenied, isLoopback } from "../app/auth/access.ts";
import { signStreamToken, verifyStreamToken } from "../app/auth/stream-token.ts";
import { connect } from "./support/client.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

const SECRET = "test-secret";

describe("access decisions", () => {
  it("loopback-open lets loopback clients in without a token and asks others for one", async () => {
    for (const addr of ["127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"]) expect(isLoopback(addr)).toBe(true);
    for (const addr of ["10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "fe80::1", ""]) expect(isLoopback(addr)).toBe(false);
    const base = { policy: "loopback-open" as const, token: null, stream: "s", secret: SECRET };
    expect(await authorizeStream({ ...base, remoteAddress: "127.0.0.1" })).toMatchObject({ read: true, write: true, via: "loopback" });
    const denied = authorizeStream({ ...base, remoteAddress: "10.1.2.3" });
    await expect(denied).rejects.toBeInstanceOf(AccessDenied);
    await expect(denied).rejects.toThrow("a token is required");
  });

  it("gives a token's scopes for its topic, and a prefix topic ending in * covers its streams", async () => {
    const token = await signStreamToken(SECRET, { topic: "spin*", scopes: ["read"], ttlSeconds: 60 });
    const g = await authorizeStream({ policy: "token", remoteAddress: "10.0.0.1", token, stream: "spin30", secret: SECRET });
    expect(g).toMatchObject({ read: true, write: false, via: "token" });
    await expect(authorizeStream({ policy: "token", remoteAddress: "10.0.0.1", token, stream: "other", secret: SECRET })).rejects.toThrow('token is for topic "spin*"');
  });

  it("signs practable's claims: topic, prefix, scopes, aud array, iat = nbf = now - 1, exp", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await signStreamToken(SECRET, { topic: "spin30-log", scopes: ["read", "write"], ttlSeconds: 31_536_000, audience: "https://relay.example.org", nowSeconds: now });
    const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString());
    expect(claims).toEqual({ topic: "spin30-log", prefix: "session", scopes: ["read", "write"], aud: ["https://relay.example.org"], iat: now - 1, nbf: now - 1, exp: now - 1 + 31_536_000 });
    await expect(verifyStreamToken(SECRET, token, "https://other.example.org")).rejects.toThrow("does not include this server");
  });
});

describe("stream tokens on /ws and the HTTP API", () => {
  let srv: TestServer;
  afterEach(async () => { await srv.close(); });

  const token = (scopes: string[], topic = "secure", ttlSeconds = 3600) => signStreamToken(srv.secret, { topic, scopes, ttlSeconds });

  it("policy token: no token, a bad signature, an expired token and a wrong topic are closed with 1008 and why", async () => {
    srv = await startTestServer({ access: "token" });
    const cases: [string, string][] = [
      [srv.wsUrl("secure"), "a token is required"],
      [srv.wsUrl("secure", `token=${await signStreamToken("other-secret", { topic: "secure", scopes: ["read"], ttlSeconds: 60 })}`), "signature does not match"],
      [srv.wsUrl("secure", `token=${await signStreamToken(srv.secret, { topic: "secure", scopes: ["read"], ttlSeconds: 10, nowSeconds: Date.now() / 1000 - 100 })}`), "expired"],
      [srv.wsUrl("secure", `token=${await token(["read"], "elsewhere")}`), 'token is for topic "elsewhere"'],
      [srv.wsUrl("secure", "token=not.a.jwt"), "not a well-formed JWT"],
    ];
    for (const [url, why] of cases) {
      const c = await connect(url);
      const closed = await c.closed;
      expect(closed.code).toBe(1008);
      expect(closed.reason).toContain(why);
    }
  });

  it("takes the token as ?token=, as Authorization Bearer or raw, and as subprotocol token.<jwt>", async () => {
    srv = await startTestServer({ access: "token" });
    const t = await token(["read", "write"]);
    const viaQuery = await connect(srv.wsUrl("secure", `token=${t}`));
    const viaBearer = await connect(srv.wsUrl("secure"), undefined, { Authorization: `Bearer ${t}` });
    const viaRaw = await connect(srv.wsUrl("secure"), undefined, { Authorization: t });
    const viaProtocol = await connect(srv.wsUrl("secure"), ["null", `token.${t}`]);
    expect(viaProtocol.ws.protocol).toBe("null");
    viaQuery.ws.send("hi");
    for (const c of [viaBearer, viaRaw, viaProtocol]) expect(await c.received(1)).toEqual(["hi"]);
  });

  it("without read a client gets nothing; without write its message closes it with 1008", async () => {
    srv = await startTestServer({ access: "token" });
    const writer = await connect(srv.wsUrl("secure", `token=${await token(["write"])}`));
    const reader = await connect(srv.wsUrl("secure", `token=${await token(["read"])}`));
    writer.ws.send("from writer");
    expect(await reader.received(1)).toEqual(["from writer"]);
    reader.ws.send("from reader");
    const closed = await reader.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain("lacks the 'write' scope");
    const both = await connect(srv.wsUrl("secure", `token=${await token(["read", "write"])}`));
    both.ws.send("to writer?");
    await Bun.sleep(100);
    expect(writer.messages).toEqual([]);
    expect(srv.hub.stream("secure")!.messagesIn).toBe(2);
  });

  it("closes a connection when its token expires", async () => {
    srv = await startTestServer({ access: "token" });
    const c = await connect(srv.wsUrl("secure", `token=${await token(["read"], "secure", 2)}`));
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    const closed = await c.closed;
    expect(closed).toEqual({ code: 1008, reason: "token expired" });
  });

  it("HTTP publish and reads follow the same rules: 401 without a token, 403 without the scope", async () => {
    srv = await startTestServer({ access: "token" });
    const sub = await connect(srv.wsUrl("secure", `token=${await token(["read"])}`));
    const post = (headers: Record<string, string>) => fetch(`${srv.url}/api/streams/secure/messages`, { method: "POST", body: "m", headers: { "content-type": "text/plain", ...headers } });
    const none = await post({});
    expect(none.status).toBe(401);
    expect((await none.json()).error.message).toContain("a token is required");
    expect((await post({ Authorization: `Bearer ${await token(["read"])}` })).status).toBe(403);
    expect((await post({ Authorization: `Bearer ${await token(["write"])}` })).status).toBe(200);
    expect(await sub.received(1)).toEqual(["m"]);
    expect((await fetch(`${srv.url}/api/streams`)).status).toBe(401);
    const listed = await (await fetch(`${srv.url}/api/streams?token=${await token(["read"], "other")}`)).json();
    expect(listed.streams).toEqual([]);
    const mine = await (await fetch(`${srv.url}/api/streams?token=${await token(["read"])}`)).json();
    expect(mine.streams.map((s: { stream: string }) => s.stream)).toEqual(["secure"]);
  });

  it("policy open needs no token, but a bad one is still refused", async () => {
    srv = await startTestServer({ access: "open" });
    const a = await connect(srv.wsUrl("s"));
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
    const b = await connect(srv.wsUrl("s", "token=garbage"));
    expect((await b.closed).code).toBe(1008);
    await waitFor(() => srv.hub.totals.connectionsRefused.policy === 1, "refusal count");
  });
});

describe("what a token may see", () => {
  let srv: TestServer;
  afterEach(async () => { await srv?.close(); });

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
