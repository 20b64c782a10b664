import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { connect } from "./support/client.ts";
import { RawWebSocket } from "./support/raw-socket.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

describe("limits and refusals", () => {
  let srv: TestServer;
  afterEach(async () => { await srv.close(); });

  it.each([
    ["bad%20name", "segment \"bad name\""],
    ["-leading-dash", "segment \"-leading-dash\""],
    ["a//b", "an empty segment"],
    ["trailing/", "an empty segment"],
    ["x".repeat(201), "201 characters"],
  ])("refuses stream name %s with close 1008 and the rule", async (name, why) => {
    srv = await startTestServer();
    const c = await connect(srv.wsUrl(name));
    const closed = await c.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain(why);
    expect(closed.reason).toContain("allowed");
    expect(srv.hub.totals.connectionsRefused.policy).toBe(1);
  });

  it("closes with 1009 and the limit when a message is larger than max_message_bytes", async () => {
    srv = await startTestServer({ max_message_bytes: 1000 });
    const sub = await connect(srv.wsUrl("big"));
    const c = await connect(srv.wsUrl("big"));
    c.ws.send("y".repeat(1000));
    expect(await sub.received(1)).toHaveLength(1);
    c.ws.send("y".repeat(1001));
    const closed = await c.closed;
    expect(closed.code).toBe(1009);
    expect(closed.reason).toBe("message of 1001 bytes is larger than the limit of 1000 bytes (setting max_message_bytes)");
    // Far past the limit, Bun itself stops reading the frame; still 1009.
    const d = await connect(srv.wsUrl("big"));
    d.ws.send("z".repeat(50_000));
    expect((await d.closed).code).toBe(1009);
    expect(sub.messages).toHaveLength(1);
  });

  it("answers 413 with the limit when an HTTP publish is too large, and 400 for a bad name", async () => {
    srv = await startTestServer({ max_message_bytes: 100 });
    const r = await fetch(`${srv.url}/api/streams/s/messages`, { method: "POST", body: "x".repeat(101) });
    expect(r.status).toBe(413);
    expect((await r.json()).error.message).toContain("limit of 100 bytes");
    const bad = await fetch(`${srv.url}/api/streams/bad%20name/messages`, { method: "POST", body: "x" });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.message).toContain("allowed");
    const notText = await fetch(`${srv.url}/api/streams/s/messages`, { method: "POST", body: new Uint8Array([0xff, 0xfe]), headers: { "content-type": "text/plain" } });
    expect(notText.status).toBe(400);
    expect((await notText.json()).error.message).toContain("UTF-8");
  });

  it("closes connections past max_connections with 1013", async () => {
    srv = await startTestServer({ max_connections: 2 });
    const a = await connect(srv.wsUrl("s"));
    const b = await connect(srv.wsUrl("s"));
    const c = await connect(srv.wsUrl("s"));
    const closed = await c.closed;
    expect(closed.code).toBe(1013);
    expect(closed.reason).toContain("limit is 2");
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
    expect(b.ws.readyState).toBe(WebSocket.OPEN);
    expect(srv.hub.connections).toBe(2);
  });

  it("answers 426 to a plain HTTP request on a websocket path", async () => {
    srv = await startTestServer();
    const r = await fetch(`${srv.url}/ws/spin30`);
    expect(r.status).toBe(426);
    expect((await r.json()).error.message).toContain("websocket");
  });

  it("closes a connection that answers no pings after keepalive_seconds", async () => {
    srv = await startTestServer({ keepalive_seconds: 8 });
    const dead = await RawWebSocket.open(srv.port, "/ws/idle");
    const live = await connect(srv.wsUrl("idle")); // Bun's client answers pings
    const t0 = Date.now();
    await dead.ended();
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThan(5_000);
    expect(live.ws.readyState).toBe(WebSocket.OPEN);
    expect(srv.hub.stream("idle")!.connections.size).toBe(1);
  }, 30_000);
});

describe("HTTP bodies", () => {
  let srv: TestServer;
  afterEach(async () => { await srv.close(); });

  it("refuses a chunked publish past the limit without reading it whole", async () => {
    srv = await startTestServer({ max_message_bytes: 1000 });
    const body = new ReadableStream({
      start(ctl) {
        for (let i = 0; i < 5; i++) ctl.enqueue(new Uint8Array(600));
        ctl.close();
      },
    });
    const r = await fetch(`${srv.url}/api/streams/s/messages`, { method: "POST", body, duplex: "half" } as RequestInit);
    expect(r.status).toBe(413);
    expect((await r.json()).error.message).toContain("limit of 1000 bytes");
    expect(srv.hub.stream("s")).toBeUndefined();
  });

  it("publishes a long-lived POST /ts/{stream} body as binary messages (practable's mpegts route)", async () => {
    srv = await startTestServer({ max_message_bytes: 1000 });
    const sub = await connect(srv.wsUrl("video0"));
    const parts = [new Uint8Array(300).fill(1), new Uint8Array(2500).fill(2), new Uint8Array(10).fill(3)];
    const body = new ReadableStream({
      async start(ctl) {
        for (const p of parts) { ctl.enqueue(p); await Bun.sleep(30); }
        ctl.close();
      },
    });
    const r = await fetch(`${srv.url}/ts/video0`, { method: "POST", body, duplex: "half" } as RequestInit);
    expect(r.status).toBe(200);
    const res = await r.json();
    expect(res).toMatchObject({ stream: "video0", bytes: 2810 });
    const got = await sub.received(res.messages);
    expect(got.every((m) => m instanceof Uint8Array && m.byteLength <= 1000)).toBe(true);
    const joined = Buffer.concat(got as Uint8Array[]);
    expect(joined.length).toBe(2810);
    expect([joined[0], joined[300], joined[2809]]).toEqual([1, 2, 3]);
  });
});
