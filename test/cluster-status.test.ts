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
  let cClosed = false;
  afterAll(async () => {
    for (const s of cClosed ? [a, b] : [a, b, c]) await s.close();
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
    cClosed = true;
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
      // A seq B never gave (another node's, say) is refused at once, naming what is allowed.
      const ahead = await connect(b.wsUrl("far/away", `after_seq=${last + 100}`));
      expect(await ahead.closed).toEqual({ code: 1008, reason: expect.stringContaining(`after_seq ${last + 100} is ahead of stream "far/away", whose last seq is ${last}`) });
      live.close();
      resumed.close();
    } finally {
      await a.close();
      await b.close();
      await stopNatsCluster(nats);
    }
  }, 60_000);
});

describe("interest: what a node subscribes to in NATS", () => {
  it("follows subscribers, SSE followers, destinations, feed rules and alert patterns, and lets go when they go; a destination relays what came from another node", async () => {
    const nats = await startNatsCluster(1);
    const [a, b, sink] = await Promise.all([
      startTestServer({}, { nodeId: "a", nats: [nats[0]!.url] }),
      startTestServer({}, { nodeId: "b", nats: [nats[0]!.url] }),
      startTestServer({}, { nodeId: "sink" }),
    ]);
    try {
      await waitFor(() => a.cluster!.state().connected && b.cluster!.state().connected, "both nodes to join", 30_000);
      const subjects = () => b.cluster!.subscribed();
      const { connect } = await import("./support/client.ts");
      expect(subjects()).toEqual([]);

      // A destination on B (relaying to another box) of a stream published on A.
      const copy = await connect(sink.wsUrl("dest-copy"));
      const rule = await fetch(`${b.url}/api/destinations`, { method: "POST", headers: { "Content-Type": "application/json", ...b.adminHeaders }, body: JSON.stringify({ id: "d1", stream: "dest/x", destination: `ws://127.0.0.1:${sink.port}/ws/dest-copy`, token: "" }) });
      expect(rule.status).toBe(200);
      await waitFor(() => subjects().includes("switchyard.s.dest.x"), "B to subscribe for its destination", 30_000);
      await waitFor(async () => {
        a.hub.publish("dest/x", "relayed from A", "test:1");
        await Bun.sleep(100);
        return copy.messages.length > 0;
      }, "a message published on A to reach the destination of B", 30_000);
      expect(copy.messages[0]).toBe("relayed from A");

      // A feed rule: B's clients of "room" also receive "cam".
      expect((await fetch(`${b.url}/api/streams`, { method: "POST", headers: { "Content-Type": "application/json", ...b.adminHeaders }, body: JSON.stringify({ stream: "room", feeds: ["cam"] }) })).status).toBe(200);
      const roomSub = await connect(b.wsUrl("room"));
      await waitFor(() => subjects().includes("switchyard.s.room") && subjects().includes("switchyard.s.cam"), "B to subscribe to the room and its feed", 30_000);

      // An SSE follower.
      const sse = new AbortController();
      const events = await fetch(`${b.url}/api/streams/sse/x/events`, { signal: sse.signal, headers: b.adminHeaders });
      expect(events.status).toBe(200);
      // The follower starts when the body is read, as a browser's EventSource does.
      void (async () => { try { for await (const _ of events.body!) { /* read */ } } catch { /* aborted */ } })();
      await waitFor(() => subjects().includes("switchyard.s.sse.x"), "B to subscribe for the SSE follower", 30_000);

      // An alert rule watching a pattern.
      b.store.update({ alert_silent_streams: [{ pattern: "watch/*", seconds: 60 }] });
      await waitFor(() => subjects().includes("switchyard.s.watch.>"), "B to subscribe for the silence rule", 30_000);

      // Interest goes with them.
      roomSub.close();
      sse.abort();
      expect((await fetch(`${b.url}/api/destinations/d1`, { method: "DELETE", headers: b.adminHeaders })).status).toBeLessThan(300);
      b.store.update({ alert_silent_streams: [] });
      await waitFor(() => subjects().length === 0, `B to unsubscribe from everything (has ${subjects().join(", ")})`, 30_000);
      copy.close();
    } finally {
      await a.close();
      await b.close();
      await sink.close();
      await stopNatsCluster(nats);
    }
  }, 90_000);

  it("keeps local traffic whole while NATS is down, keeps what it can in a bounded buffer and counts what overflows", async () => {
    const nats = await startNatsCluster(1);
    // The local subscriber may have all 12 MiB waiting (it is not what this test is about).
    const a = await startTestServer({ backpressure_limit_bytes: 64 * 1024 * 1024 }, { nodeId: "a", nats: [nats[0]!.url] });
    try {
      await waitFor(() => a.cluster!.state().connected, "A to join", 30_000);
      await stopNatsCluster(nats);
      await waitFor(() => !a.cluster!.state().connected, "A to see NATS gone", 30_000);
      const { connect } = await import("./support/client.ts");
      const sub = await connect(a.wsUrl("big/x"));
      const chunk = "x".repeat(256 * 1024);
      // 48 × 256 KiB = 12 MiB: more than the 8 MiB buffer.
      for (let i = 0; i < 48; i++) a.hub.publish("big/x", `${i} ${chunk}`, "test:1");
      await sub.received(48, 30_000);
      expect(sub.messages.map((m) => String(m).split(" ")[0])).toEqual(Array.from({ length: 48 }, (_, i) => String(i)));
      const s = a.cluster!.state();
      // What fits in 8 MiB is kept, in order; everything after is dropped, counted.
      let fit = 0;
      for (let i = 0, bytes = 0; i < 48 && (bytes += `${i} `.length + chunk.length) <= 8 * 1024 * 1024; i++) fit++;
      expect(fit).toBe(31);
      expect(s.buffered).toBe(fit);
      expect(s.bufferDropped).toBe(48 - fit);
      expect(s.pending_bytes).toBeLessThanOrEqual(8 * 1024 * 1024);
      expect(s.published).toBe(0);
      sub.close();
    } finally {
      await a.close();
    }
  }, 60_000);
});

describe("joining through the nats_servers setting", () => {
  it("joins from the next start with the stored servers; a bad entry is refused with what is allowed", async () => {
    const nats = await startNatsCluster(1);
    const { tempDir, adminHeadersFor } = await import("./support/server.ts");
    const { spawnServe } = await import("./support/cli.ts");
    const { SettingsStore } = await import("../app/config/store.ts");
    const tmp = tempDir();
    try {
      const probe = await startTestServer({}, { dataDir: tmp.dir });
      const bad = await probe.app.request("/api/settings", { method: "PATCH", headers: { "Content-Type": "application/json", ...probe.adminHeaders }, body: JSON.stringify({ nats_servers: ["http://10.0.0.1:4222"] }) });
      expect(bad.status).toBe(400);
      expect(await bad.text()).toContain("is not a NATS URL; allowed: nats://host:port, tls://host:port or host:port");
      const good = await probe.app.request("/api/settings", { method: "PATCH", headers: { "Content-Type": "application/json", ...probe.adminHeaders }, body: JSON.stringify({ nats_servers: [nats[0]!.url.replace("nats://", "")] }) });
      expect(good.status).toBe(200);
      // Restart-required: the running server has not joined.
      expect(probe.cluster).toBeNull();
      await probe.stop();
      const stored = SettingsStore.open(tmp.dir);
      expect(stored.settings.nats_servers).toEqual([nats[0]!.url.replace("nats://", "")]);
      stored.close();
      // No --nats, no SWITCHYARD_NATS: the setting is what joins it.
      expect(process.env.SWITCHYARD_NATS).toBeUndefined();
      const srv = await spawnServe(tmp.dir, { SWITCHYARD_NODE_ID: "from-setting" });
      try {
        await waitFor(async () => (await (await fetch(`http://127.0.0.1:${srv.port}/metrics`, { headers: await adminHeadersFor(tmp.dir) })).text()).includes('switchyard_cluster_connected{node="from-setting"} 1'), "the node to join through the setting", 30_000);
      } finally {
        srv.p.kill("SIGKILL");
        await srv.p.exited;
      }
    } finally {
      tmp.remove();
      await stopNatsCluster(nats);
    }
  }, 60_000);
});

describe("a node's status reply", () => {
  it("lists at most the 1,000 busiest streams and says how many there are", async () => {
    const { nodeStatus, STATUS_STREAMS } = await import("../app/cluster/status.ts");
    const s = await startTestServer({}, { nodeId: "many" });
    try {
      for (let i = 0; i < STATUS_STREAMS + 50; i++) s.hub.publish(`many/s${i}`, "x", "test:1");
      for (let k = 0; k < 5; k++) s.hub.publish("zz/busy", "x", "test:1");
      s.hub.tick();
      const st = nodeStatus(s.hub, "many", "v");
      expect(st.streams_total).toBe(STATUS_STREAMS + 51);
      expect(st.streams.length).toBe(STATUS_STREAMS);
      expect(st.streams.map((x) => x.stream)).toContain("zz/busy"); // last by name, first by rate
      expect(Buffer.byteLength(JSON.stringify(st))).toBeLessThan(1024 * 1024);
    } finally {
      await s.close();
    }
  });
});

describe("a NATS server that stops reading", () => {
  it("does not make the node buffer without end: past the buffer, messages are dropped from the cluster path and counted; local traffic goes on", async () => {
    const nats = await startNatsCluster(1);
    const a = await startTestServer({}, { nodeId: "a", nats: [nats[0]!.url] });
    try {
      await waitFor(() => a.cluster!.state().connected, "A to join", 30_000);
      const { connect } = await import("./support/client.ts");
      const local = await connect(a.wsUrl("small/x"));
      nats[0]!.proc!.kill("SIGSTOP");
      const chunk = "x".repeat(256 * 1024);
      // 200 × 256 KiB = 50 MiB at a server that reads nothing: the 8 MiB buffer plus what the kernel's socket buffers hold can take only part of it.
      for (let i = 0; i < 200; i++) {
        a.hub.publish("big/y", chunk, "test:1");
        if (i % 10 === 9) await Bun.sleep(5);
      }
      const s = a.cluster!.state();
      console.log(`stopped server: ${s.published} of 200 handed to NATS, ${s.bufferDropped} dropped`);
      expect(s.published + s.bufferDropped).toBe(200);
      expect(s.bufferDropped).toBeGreaterThanOrEqual(100);
      a.hub.publish("small/x", "still local", "test:1");
      expect(await local.received(1)).toEqual(["still local"]);
      nats[0]!.proc!.kill("SIGCONT");
      // Once the server reads again, messages go out again.
      await waitFor(() => {
        a.hub.publish("big/y", "after", "test:1");
        return a.cluster!.state().published > s.published;
      }, "A to publish again after the server woke up", 30_000);
      local.close();
    } finally {
      nats[0]!.proc?.kill("SIGCONT");
      await a.close();
      await stopNatsCluster(nats);
    }
  }, 60_000);
});
