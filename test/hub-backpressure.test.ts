import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { connect } from "./support/client.ts";
import { RawWebSocket } from "./support/raw-socket.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

const PAYLOAD = "p".repeat(1000);

/** Publishes `n` numbered ~1 KB messages over a websocket, yielding now and then so the event loop turns. */
async function flood(url: string, n: number) {
  const pub = await connect(url);
  for (let i = 0; i < n; i++) {
    pub.ws.send(`${i}:${PAYLOAD}`);
    if (i % 500 === 499) await Bun.sleep(1);
  }
  return pub;
}

// The policy's accounting (lag, drops, a policy switched while lagging, feeds) is unit-tested
// with a fake fan-out in hub.test.ts; these check it against real sockets and Bun's native limit.
describe("backpressure", () => {
  let srv: TestServer;
  afterEach(async () => { await srv.close(); });

  it("policy drop: a stalled reader loses messages (counted) and does not slow a fast reader", async () => {
    srv = await startTestServer({ backpressure_policy: "drop", backpressure_limit_bytes: 256 * 1024 });
    const stalled = await RawWebSocket.open(srv.port, "/ws/bp");
    stalled.stall();
    const fast = await connect(srv.wsUrl("bp"));
    const n = 30_000; // ~30 MB: far past the kernel's socket buffers and the 256 KiB limit
    await flood(srv.wsUrl("bp"), n);
    const got = await fast.received(n, 30_000);
    expect(got.length).toBe(n);
    expect(got.every((m, i) => (m as string).startsWith(`${i}:`))).toBe(true);
    const s = srv.hub.stream("bp")!;
    expect(s.dropped).toBeGreaterThan(0);
    expect(s.slowDisconnects).toBe(0);
    // The stalled reader's buffer stays bounded: the limit, one check interval (limit/4), and
    // what uWebSockets had in its 16 KiB cork buffer when it was measured.
    const lagging = [...s.connections].find((c) => c.lag);
    expect(lagging).toBeDefined();
    expect(lagging!.ws!.getBufferedAmount()).toBeLessThan(256 * 1024 + 64 * 1024 + 32 * 1024);
    // ...which is far below the native limit, so the native layer dropped nothing uncounted.
    expect(srv.logs.some((l) => l.includes("native layer dropped"))).toBe(false);
    // Once it reads again it catches up, and its drops are settled into the count.
    const droppedWhileLagging = s.dropped;
    await stalled.readUntilClose(1000);
    await waitFor(() => ![...s.connections].some((c) => c.lag), "the stalled reader to catch up");
    expect(s.droppedSettled).toBe(droppedWhileLagging);
    expect([...s.connections].every((c) => c.subscribed)).toBe(true);
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toContain(`switchyard_stream_dropped_total{stream="bp"} ${droppedWhileLagging}`);
    stalled.destroy();
  });

  it("policy disconnect: a stalled reader is closed with 1013 and a reason, the fast reader gets everything", async () => {
    srv = await startTestServer({ backpressure_policy: "disconnect", backpressure_limit_bytes: 256 * 1024 });
    const stalled = await RawWebSocket.open(srv.port, "/ws/bp2");
    stalled.stall();
    const fast = await connect(srv.wsUrl("bp2"));
    const n = 20_000;
    await flood(srv.wsUrl("bp2"), n);
    expect((await fast.received(n, 30_000)).length).toBe(n);
    const s = srv.hub.stream("bp2")!;
    await waitFor(() => s.slowDisconnects === 1, "the slow subscriber to be disconnected");
    const seen = await stalled.readUntilClose(10_000);
    expect(seen.code).toBe(1013);
    expect(seen.reason).toContain("too slow");
    expect(seen.reason).toContain("limit 262144");
    expect(seen.frames).toBeLessThan(n);
    expect(s.dropped).toBe(0);
    expect(srv.hub.totals.slowDisconnects).toBe(1);
  });
});
