import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
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
