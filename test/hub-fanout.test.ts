import { afterEach, beforeEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { connect } from "./support/client.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

describe("websocket fan-out on /ws/{stream}", () => {
  let srv: TestServer;
  beforeEach(async () => { srv = await startTestServer(); });
  afterEach(async () => { await srv.close(); });

  it("delivers a message to every other client of the stream and not back to the sender", async () => {
    const [a, b, c] = await Promise.all([connect(srv.wsUrl("spin30")), connect(srv.wsUrl("spin30")), connect(srv.wsUrl("spin30"))]);
    const other = await connect(srv.wsUrl("spin31"));
    a.ws.send("hello");
    expect(await b.received(1)).toEqual(["hello"]);
    expect(await c.received(1)).toEqual(["hello"]);
    // The sender and a client of another stream get nothing: send a marker through b and see it arrive first at a.
    b.ws.send("marker");
    expect(await a.received(1)).toEqual(["marker"]);
    await Bun.sleep(50);
    expect(other.messages).toEqual([]);
    for (const x of [a, b, c, other]) x.close();
  });

  it("keeps text as text and binary as binary", async () => {
    const a = await connect(srv.wsUrl("mixed"));
    const b = await connect(srv.wsUrl("mixed"));
    a.ws.send("text ✓");
    a.ws.send(new Uint8Array([0, 1, 2, 255]));
    const got = await b.received(2);
    expect(got[0]).toBe("text ✓");
    expect(got[1]).toBeInstanceOf(Uint8Array);
    expect([...(got[1] as Uint8Array)]).toEqual([0, 1, 2, 255]);
  });

  it("accepts the subprotocol \"null\" as practable clients send it", async () => {
    const a = await connect(srv.wsUrl("spin30"), ["null"]);
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
    expect(a.ws.protocol).toBe("null");
  });

  it("takes stream names with slashes", async () => {
    const a = await connect(srv.wsUrl("lab/rig-1/cam.0"));
    const b = await connect(srv.wsUrl("lab/rig-1/cam.0"));
    a.ws.send("x");
    expect(await b.received(1)).toEqual(["x"]);
    expect(srv.hub.stream("lab/rig-1/cam.0")?.messagesIn).toBe(1);
  });

  it("delivers 10,000 messages sent as fast as possible complete and in order to every other client", async () => {
    const subs = await Promise.all([1, 2, 3].map(() => connect(srv.wsUrl("keys"))));
    const pub = await connect(srv.wsUrl("keys"));
    const n = 10_000;
    for (let i = 0; i < n; i++) pub.ws.send(`k${i}`);
    for (const s of subs) {
      const got = await s.received(n, 20_000);
      expect(got.length).toBe(n);
      expect(got.every((m, i) => m === `k${i}`)).toBe(true);
    }
    const stats = srv.hub.stream("keys")!;
    expect(stats.seq).toBe(n);
    expect(stats.messagesOut).toBe(3 * n);
    expect(stats.dropped).toBe(0);
  });

  it("stamps seq strictly increasing per stream and ts in microseconds, for every source", async () => {
    const seen: { stream: string; seq: number; ts: number; origin: string }[] = [];
    srv.hub.onMessage((m) => seen.push(m));
    const a = await connect(srv.wsUrl("s1"));
    a.ws.send("one");
    await waitFor(() => seen.length === 1, "ws message");
    const r = await fetch(`${srv.url}/api/streams/s1/messages`, { method: "POST", body: "two", headers: { "content-type": "text/plain" } });
    expect(r.status).toBe(200);
    a.ws.send("three");
    await waitFor(() => seen.length === 3, "all messages");
    expect(seen.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(seen[0]!.origin).toMatch(/^ws:127\.0\.0\.1:\d+$/);
    expect(seen[1]!.origin).toBe("http:127.0.0.1");
    expect(seen[2]!.ts).toBeGreaterThanOrEqual(seen[0]!.ts);
    expect(Math.abs(seen[0]!.ts / 1000 - Date.now())).toBeLessThan(60_000);
  });

  it("publishes an HTTP POST to websocket subscribers, text or binary by Content-Type", async () => {
    const sub = await connect(srv.wsUrl("spin30"));
    const t = await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: '{"v":1}', headers: { "content-type": "application/json" } });
    expect(t.status).toBe(200);
    expect(await t.json()).toMatchObject({ stream: "spin30", seq: 1, kind: "text", bytes: 7 });
    const b = await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: new Uint8Array([9, 8, 7]), headers: { "content-type": "application/octet-stream" } });
    expect(await b.json()).toMatchObject({ seq: 2, kind: "binary", bytes: 3 });
    const got = await sub.received(2);
    expect(got[0]).toBe('{"v":1}');
    expect([...(got[1] as Uint8Array)]).toEqual([9, 8, 7]);
  });

  it("reports streams with subscribers, publishers, counters and rates", async () => {
    const a = await connect(srv.wsUrl("stats"));
    const b = await connect(srv.wsUrl("stats"));
    for (let i = 0; i < 5; i++) a.ws.send("12345");
    await b.received(5);
    const list = await (await fetch(`${srv.url}/api/streams`)).json();
    expect(list.count).toBe(1);
    const one = await (await fetch(`${srv.url}/api/streams/stats`)).json();
    expect(one).toMatchObject({ stream: "stats", seq: 5, subscribers: 2, publishers: 1, messages_in: 5, bytes_in: 25, messages_out: 5, bytes_out: 25, dropped: 0 });
    expect(typeof one.last_message_at).toBe("string");
    srv.hub.tick();
    const after = await (await fetch(`${srv.url}/api/streams/stats`)).json();
    expect(after.rate_1s).toBe(5);
    expect(after.rate_1m).toBe(5);
    const missing = await fetch(`${srv.url}/api/streams/nope`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.message).toContain("nope");
  });
});

describe("message sinks", () => {
  it("a failing sink costs neither the publisher its message nor the other sinks theirs", async () => {
    const srv = await startTestServer();
    try {
      const seen: number[] = [];
      srv.hub.onMessage(() => { throw new Error("sink bug"); });
      srv.hub.onMessage((m) => seen.push(m.seq));
      const sub = await connect(srv.wsUrl("s"));
      const r = await fetch(`${srv.url}/api/streams/s/messages`, { method: "POST", body: "x" });
      expect(r.status).toBe(200);
      expect(await sub.received(1)).toHaveLength(1);
      expect(seen).toEqual([1]);
      expect(srv.hub.totals.sinkErrors).toBe(1);
      expect(srv.logs.some((l) => l.includes("message sink failed"))).toBe(true);
    } finally {
      await srv.close();
    }
  });
});

describe("publisher counts", () => {
  let srv: TestServer;
  afterEach(async () => { await srv?.close(); });

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
