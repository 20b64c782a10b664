import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { asAdmin, readEvents, signIn } from "./support/admin.ts";
import { startNatsCluster, stopNatsCluster, type NatsNode } from "./support/nats.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

interface View {
  node: string;
  joined: boolean;
  connected: boolean;
  nodes: { node: string; version: string; connections: number; streams: { stream: string; messages_in: number }[] }[];
  missing: string[];
  wait_ms: number;
}

describe("cluster state over NATS request/reply", () => {
  let nats: NatsNode[];
  let a: TestServer, b: TestServer, c: TestServer;
  beforeAll(async () => {
    nats = await startNatsCluster(3);
    [a, b, c] = (await Promise.all(["a", "b", "c"].map((id, i) => startTestServer({}, { nodeId: id, nats: [nats[i]!.url] })))) as [TestServer, TestServer, TestServer];
    await waitFor(() => [a, b, c].every((s) => s.cluster!.state().connected), "every node to join", 30_000);
  }, 60_000);
  afterAll(async () => {
    for (const s of [a, b]) await s.close();
    await stopNatsCluster(nats);
  });

  const view = async (s: TestServer, query = "") => {
    const r = await s.app.request(`/api/streams?scope=cluster${query}`, { headers: s.adminHeaders });
    expect(r.status).toBe(200);
    return (await r.json()) as View;
  };

  it("GET /api/streams?scope=cluster lists every node with its streams; without scope it is this node's list as before", async () => {
    b.hub.publish("only/on-b", "x", "test:1");
    c.hub.publish("only/on-c", "y", "test:1");
    c.hub.publish("only/on-c", "z", "test:1");
    const v = await view(a);
    expect(v.joined).toBe(true);
    expect(v.connected).toBe(true);
    expect(v.nodes.map((n) => n.node)).toEqual(["a", "b", "c"]);
    expect(v.missing).toEqual([]);
    expect(v.nodes.find((n) => n.node === "b")!.streams.map((s) => [s.stream, s.messages_in])).toEqual([["only/on-b", 1]]);
    expect(v.nodes.find((n) => n.node === "c")!.streams.map((s) => [s.stream, s.messages_in])).toEqual([["only/on-c", 2]]);
    expect(v.nodes.find((n) => n.node === "a")!.streams).toEqual([]);
    const plain = await (await a.app.request("/api/streams", { headers: a.adminHeaders })).json();
    expect(plain).toEqual({ streams: [], count: 0 });
  }, 30_000);

  it("shows the cluster on the admin dashboard, live over SSE", async () => {
    const admin = asAdmin(a, await signIn(a));
    const page = await (await admin.get("/admin")).text();
    expect(page).toContain("<h2>Cluster</h2>");
    expect(page).toContain('sse-swap="cluster"');
    expect(page).toContain("connected</span> to <code>");
    // The live part: the SSE event "cluster" carries every node, b and c with their streams.
    const events = await readEvents(await admin.get("/admin/events/dashboard"), /event: cluster\ndata: [^\n]*data-node="c"[^\n]*only\/on-c/, 15_000);
    expect(events).toMatch(/event: cluster\ndata: [^\n]*data-node="b"[^\n]*only\/on-b/);
  }, 30_000);

  it("lists a node that did not answer within the wait, and waits no longer than asked", async () => {
    await c.close();
    const started = Date.now();
    const v = await view(a, "&wait_ms=300");
    expect(Date.now() - started).toBeLessThan(3000);
    expect(v.wait_ms).toBe(300);
    expect(v.nodes.map((n) => n.node)).toEqual(["a", "b"]);
    expect(v.missing).toEqual(["c"]);
  }, 30_000);

  it("says what is wrong with a bad scope or wait", async () => {
    for (const [q, text] of [["?scope=everything", "allowed: node (this node's streams, the default) or cluster"], ["?scope=cluster&wait_ms=0", "allowed: a whole number of milliseconds from 1 to 5000"], ["?scope=cluster&wait_ms=9999", "from 1 to 5000"]] as const) {
      const r = await a.app.request(`/api/streams${q}`, { headers: a.adminHeaders });
      expect(r.status).toBe(400);
      expect(await r.text()).toContain(text);
    }
  });
});

describe("a node that has not joined a cluster", () => {
  it("answers scope=cluster with itself only and shows no cluster card", async () => {
    const s = await startTestServer({}, { nodeId: "alone" });
    try {
      const v = (await (await s.app.request("/api/streams?scope=cluster", { headers: s.adminHeaders })).json()) as View;
      expect(v.joined).toBe(false);
      expect(v.nodes.map((n) => n.node)).toEqual(["alone"]);
      expect(await (await s.app.request("/admin", { headers: s.adminHeaders })).text()).not.toContain("<h2>Cluster</h2>");
    } finally {
      await s.close();
    }
  });
});

describe("resuming on a node that received a stream from the cluster", () => {
  it("replays what memory holds and reports the older cluster messages as a gap, not a silent skip or a wait", async () => {
    const nats = await startNatsCluster(1);
    const [a, b] = await Promise.all([
      startTestServer({}, { nodeId: "a", nats: [nats[0]!.url] }),
      startTestServer({ recent_messages_per_stream: 10 }, { nodeId: "b", nats: [nats[0]!.url] }),
    ]);
    try {
      await waitFor(() => a.cluster!.state().connected && b.cluster!.state().connected, "both nodes to join", 30_000);
      const { connect } = await import("./support/client.ts");
      const live = await connect(b.wsUrl("far/away"));
      await waitFor(() => b.cluster!.state().subjects === 1, "B to subscribe", 30_000);
      await waitFor(async () => {
        a.hub.publish("far/away", "probe", "test:1");
        await Bun.sleep(100);
        return live.messages.length > 0;
      }, "a probe to reach B", 30_000);
      const probes = live.messages.length;
      for (let i = 1; i <= 50; i++) a.hub.publish("far/away", `m-${i}`, "test:1");
      await live.received(probes + 50, 30_000);
      const last = b.hub.lastDeliveredSeq("far/away");
      expect(last).toBe(probes + 50);
      // B's log has none of them; its memory has the last 10.
      const resumed = await connect(b.wsUrl("far/away", "after_seq=0&envelope=json"));
      const frames = (await resumed.received(11, 30_000)).map((m) => JSON.parse(String(m)));
      expect(frames[0]).toMatchObject({ event: "gap", from: 1, to: last - 10 });
      expect(frames[0].reason).toBe(`seq 1..${last - 10} are before the start of history: the oldest message kept is seq ${last - 9}`);
      expect(frames.slice(1).map((f) => f.data)).toEqual(Array.from({ length: 10 }, (_, k) => `m-${41 + k}`));
      live.close();
      resumed.close();
    } finally {
      await a.close();
      await b.close();
      await stopNatsCluster(nats);
    }
  }, 60_000);
});
