import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import net from "node:net";
import { connect } from "./support/client.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

/** Reads server-sent events from a fetch response body. */
async function* sseEvents(res: Response) {
  const reader = res.body!.getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += new TextDecoder().decode(value);
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) yield { event, data: JSON.parse(data) };
    }
  }
}

describe("stream lifecycle events", () => {
  let srv: TestServer;
  afterEach(async () => { await srv.close(); });

  it("announces streams coming and going on /ws/$streams, after a snapshot", async () => {
    srv = await startTestServer({ stream_linger_seconds: 0 });
    const existing = await connect(srv.wsUrl("before"));
    const watcher = await connect(srv.wsUrl("$streams"));
    const [snapshot] = await watcher.received(1);
    expect(JSON.parse(snapshot as string)).toMatchObject({ event: "snapshot", streams: [{ stream: "before", subscribers: 1 }] });
    const c = await connect(srv.wsUrl("spin30"));
    const added = JSON.parse((await watcher.received(2))[1] as string);
    expect(added).toMatchObject({ event: "stream_added", stream: "spin30" });
    c.close();
    await waitFor(() => srv.hub.stream("spin30")?.connections.size === 0, "the client to leave");
    srv.hub.tick(); // notes the stream idle
    srv.hub.tick(); // linger 0 s has passed: removed
    const removed = JSON.parse((await watcher.received(3))[2] as string);
    expect(removed).toMatchObject({ event: "stream_removed", stream: "spin30" });
    expect(srv.hub.stream("spin30")).toBeUndefined();
    expect(srv.hub.stream("before")).toBeDefined();
    existing.close();
  });

  it("keeps an idle stream for stream_linger_seconds, then removes it; its seq keeps counting up when it comes back", async () => {
    srv = await startTestServer({ stream_linger_seconds: 60 });
    const post = () => fetch(`${srv.url}/api/streams/comeback/messages`, { method: "POST", body: "x" }).then((r) => r.json());
    expect((await post()).seq).toBe(1);
    srv.hub.tick();
    srv.hub.tick();
    expect(srv.hub.stream("comeback")).toBeDefined();
    srv.store.update({ stream_linger_seconds: 0 });
    srv.hub.tick();
    expect(srv.hub.stream("comeback")).toBeUndefined();
    expect((await post()).seq).toBe(2);
  });

  it("refuses messages sent to the read-only $streams", async () => {
    srv = await startTestServer();
    const watcher = await connect(srv.wsUrl("$streams"));
    watcher.ws.send("hello");
    const closed = await watcher.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain("read-only");
  });

  it("streams the same events as server-sent events on GET /api/events", async () => {
    srv = await startTestServer({ stream_linger_seconds: 0 });
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/api/events`, { signal: ac.signal });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = sseEvents(res);
    expect((await events.next()).value).toMatchObject({ event: "snapshot", data: { streams: [] } });
    await fetch(`${srv.url}/api/streams/sse-demo/messages`, { method: "POST", body: "x" });
    expect((await events.next()).value).toMatchObject({ event: "stream_added", data: { stream: "sse-demo" } });
    srv.hub.tick();
    srv.hub.tick();
    expect((await events.next()).value).toMatchObject({ event: "stream_removed", data: { stream: "sse-demo" } });
    ac.abort();
  });
});

/** Reads server-sent events with their ids from a raw byte source, as an EventSource parses them. */
function parseSse(text: string) {
  const out: { id?: string; event?: string; data?: string; retry?: number }[] = [];
  for (const block of text.split("\n\n")) {
    if (!block.trim() || block.startsWith(":")) continue;
    const e: { id?: string; event?: string; data?: string; retry?: number } = {};
    for (const line of block.split("\n")) {
      const i = line.indexOf(": ");
      const [k, v] = i < 0 ? [line, ""] : [line.slice(0, i), line.slice(i + 2)];
      if (k === "id" || k === "event" || k === "data") e[k] = v;
      else if (k === "retry") e.retry = Number(v);
    }
    out.push(e);
  }
  return out;
}

describe("GET /api/events: ids, retry, resume and a bounded backlog", () => {
  let srv: TestServer;
  afterEach(async () => { await srv.close(); });

  /** Reads SSE blocks from a response until `n` events (not counting a lone retry) have come. */
  async function read(res: Response, n: number) {
    const reader = res.body!.getReader();
    let text = "";
    const deadline = Date.now() + 10_000;
    while (parseSse(text).filter((e) => e.event).length < n || !text.endsWith("\n\n")) {
      if (Date.now() > deadline) throw new Error(`expected ${n} events, got: ${text}`);
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    return parseSse(text);
  }

  it("sends retry: and an id: with every event, and resumes after Last-Event-ID without a snapshot", async () => {
    srv = await startTestServer({ stream_linger_seconds: 0 });
    const first = new AbortController();
    const res = await fetch(`${srv.url}/api/events`, { signal: first.signal });
    const [snapshot] = await read(res, 1);
    expect(snapshot!.retry).toBe(3000);
    expect(snapshot!.id).toMatch(/^[0-9a-f]+-\d+$/);
    // The same fields as the websocket $streams stream.
    expect(JSON.parse(snapshot!.data!)).toMatchObject({ event: "snapshot", streams: [], ts: expect.any(String) });
    await fetch(`${srv.url}/api/streams/a/messages`, { method: "POST", body: "x" });
    const more = await read(res, 1);
    const added = more.find((e) => e.event === "stream_added")!;
    expect(JSON.parse(added.data!)).toEqual({ event: "stream_added", stream: "a", ts: expect.any(String) });
    first.abort();
    // Missed while away: b and c.
    await fetch(`${srv.url}/api/streams/b/messages`, { method: "POST", body: "x" });
    await fetch(`${srv.url}/api/streams/c/messages`, { method: "POST", body: "x" });
    const resumed = await fetch(`${srv.url}/api/events`, { headers: { "Last-Event-ID": added.id! } });
    const replay = (await read(resumed, 2)).filter((e) => e.event);
    expect(replay.map((e) => [e.event, JSON.parse(e.data!).stream])).toEqual([["stream_added", "b"], ["stream_added", "c"]]);
    expect(Number(replay[1]!.id!.split("-")[1])).toBeGreaterThan(Number(replay[0]!.id!.split("-")[1]));
    await resumed.body!.cancel();
    // An id this process never gave (another boot, or made up) starts over with a snapshot.
    for (const id of ["deadbeef-1", "junk"]) {
      const fresh = await fetch(`${srv.url}/api/events`, { headers: { "Last-Event-ID": id } });
      const [e] = await read(fresh, 1);
      expect(e!.event).toBe("snapshot");
      expect(JSON.parse(e!.data!).streams.map((s: { stream: string }) => s.stream).sort()).toEqual(["a", "b", "c"]);
      await fresh.body!.cancel();
    }
  });

  it("holds a bounded backlog for a client that stops reading: it gets a fresh snapshot, not every event", async () => {
    srv = await startTestServer({});
    const socket = net.connect(srv.port, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", resolve));
    socket.write("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let text = "";
    await new Promise<void>((resolve) => socket.once("data", (d) => { text += d.toString(); resolve(); }));
    socket.pause(); // a reader that stops reading: the kernel's buffers fill, then the server's backlog would
    // Far more events (about 270 bytes each) than loopback's socket buffers hold.
    const total = 20_000;
    const pad = "p".repeat(180);
    for (let i = 0; i < total; i++) {
      srv.hub.publish(`lag-${i}-${pad}`, "x", "test");
      if (i % 1000 === 999) await Bun.sleep(5); // let the server write what the socket takes
    }
    socket.on("data", (d) => { text += d.toString(); });
    socket.resume();
    // Reading again, the client catches up through a new snapshot that lists every stream.
    // (Each event is one HTTP chunk, so counting the event lines needs no de-chunking.)
    const second = () => text.indexOf("event: snapshot", text.indexOf("event: snapshot") + 1);
    await waitFor(() => second() > 0 && text.includes(`"stream":"lag-${total - 1}-`, second()), "a second snapshot listing the last stream", 60_000);
    socket.destroy();
    const added = (text.match(/event: stream_added/g) ?? []).length;
    expect(added).toBeLessThan(total);
  });
});
