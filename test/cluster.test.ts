import { afterEach, describe, expect, it } from "bun:test";
import { connect as natsConnect, headers as natsHeaders } from "@nats-io/transport-node";
import type { Settings } from "../app/config/settings.ts";
import { SettingsStore } from "../app/config/store.ts";
import { spawnServe } from "./support/cli.ts";
import { connect, liveTraffic, type TestClient } from "./support/client.ts";
import { startFakeSlack } from "./support/fake-slack.ts";
import { routesUp, startNatsCluster, stopNatsCluster, type NatsNode } from "./support/nats.ts";
import { adminHeadersFor, sqlRows, tempDir, waitFor } from "./support/server.ts";

/** A Switchyard node: a real `serve` subprocess on its own data dir, joined to NATS. */
interface Node {
  name: string;
  url: string;
  port: number;
  dataDir: string;
  ws(stream: string): string;
  metric(name: string): Promise<number>;
  kill(): Promise<void>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function natsCluster(): Promise<NatsNode[]> {
  const nats = await startNatsCluster(3);
  cleanups.push(() => stopNatsCluster(nats));
  return nats;
}

async function node(name: string, nats: string[], settings: Partial<Settings> = {}, env: Record<string, string> = {}): Promise<Node> {
  const tmp = tempDir();
  if (Object.keys(settings).length > 0) {
    const store = SettingsStore.open(tmp.dir);
    store.update(settings);
    store.close();
  }
  const srv = await spawnServe(tmp.dir, { SWITCHYARD_NODE_ID: name, SWITCHYARD_NATS: nats.join(","), ...env });
  let alive = true;
  const kill = async () => {
    if (!alive) return;
    alive = false;
    srv.p.kill("SIGKILL");
    await srv.p.exited;
  };
  cleanups.push(async () => {
    await kill();
    tmp.remove();
  });
  const url = `http://127.0.0.1:${srv.port}`;
  return {
    name, url, port: srv.port, dataDir: tmp.dir, kill,
    ws: (stream) => `ws://127.0.0.1:${srv.port}/ws/${stream}`,
    async metric(metric) {
      const text = await (await fetch(`${url}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${metric} `) || l.startsWith(`${metric}{`));
      if (!line) throw new Error(`no ${metric} in /metrics of ${name}`);
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    },
  };
}

async function joined(...nodes: Node[]): Promise<void> {
  for (const n of nodes) await waitFor(async () => (await n.metric("switchyard_cluster_connected")) === 1, `node ${n.name} to connect to NATS`, 30_000);
}

/** Message i of a run: even ones text `m-i`, odd ones binary (i as 4 bytes, then 0xff 0x00). */
function payload(i: number): string | Uint8Array {
  if (i % 2 === 0) return `m-${i}`;
  const b = new Uint8Array(6);
  new DataView(b.buffer).setUint32(0, i);
  b[4] = 0xff;
  return b;
}

/** The run index of a received message (null for probes), checking that text stayed text and binary binary. */
function indexOf(m: string | Uint8Array): number | null {
  if (typeof m === "string") {
    if (m.startsWith("probe")) return null;
    const i = Number(m.slice(2));
    if (!m.startsWith("m-") || i % 2 !== 0) throw new Error(`unexpected text message ${m}`);
    return i;
  }
  const i = new DataView(m.buffer, m.byteOffset).getUint32(0);
  if (m.length !== 6 || m[4] !== 0xff || m[5] !== 0 || i % 2 !== 1) throw new Error(`unexpected binary message ${[...m]}`);
  return i;
}

const indexes = (c: TestClient) => c.messages.map(indexOf).filter((i): i is number => i !== null);

/** Publishes probes on `pub` until every subscriber has one: cross-node interest is in place. */
async function probe(pub: TestClient, subs: TestClient[], tag = "probe"): Promise<number> {
  let sent = 0;
  const has = () => subs.every((s) => s.messages.some((m) => typeof m === "string" && m.startsWith(tag)));
  await waitFor(async () => {
    if (has()) return true;
    pub.ws.send(`${tag}-${sent++}`);
    await Bun.sleep(100);
    return has();
  }, "a probe to cross the cluster", 30_000);
  return sent;
}

/** Sends run messages from..to-1, in bursts so the event loop turns. */
async function publishRun(pub: TestClient, from: number, to: number, burst = 500, pauseMs = 1): Promise<void> {
  for (let i = from; i < to; i++) {
    pub.ws.send(payload(i));
    if (i % burst === burst - 1) await Bun.sleep(pauseMs);
  }
}

function expectStrictlyIncreasing(xs: number[]): void {
  const bad = xs.findIndex((x, k) => k > 0 && x <= xs[k - 1]!);
  if (bad >= 0) throw new Error(`out of order or duplicated at position ${bad}: ${xs[bad - 1]} then ${xs[bad]}`);
}

const count = async (n: Node, stream: string) =>
  Number((await sqlRows(n.url, `SELECT count(*) AS n FROM messages WHERE stream = '${stream}'`, await adminHeadersFor(n.dataDir)))[0]!.n);

describe("the live path across nodes (NATS)", () => {
  it("delivers 10,000 messages published on A to subscribers on B and C, in order, exactly once, text and binary kept; each is in A's log only", async () => {
    const nats = await natsCluster();
    const [a, b, c] = await Promise.all([node("a", [nats[0]!.url]), node("b", [nats[1]!.url]), node("c", [nats[2]!.url])]);
    await joined(a, b, c);
    const stream = "fan/out.v1";
    const subB = await connect(b.ws(stream));
    const subC = await connect(c.ws(stream));
    const pub = await connect(a.ws(stream));
    const probes = await probe(pub, [subB, subC]);
    const N = 10_000;
    await publishRun(pub, 0, N);
    for (const s of [subB, subC]) await waitFor(() => indexes(s).length >= N, `${N} messages on a subscriber (has ${indexes(s).length})`, 180_000);
    await Bun.sleep(300);
    for (const s of [subB, subC]) {
      const got = indexes(s);
      expect(got.length).toBe(N);
      expectStrictlyIncreasing(got);
      expect(got[0]).toBe(0);
      expect(got[N - 1]).toBe(N - 1);
      expect(s.messages.filter((m) => typeof m !== "string").length).toBe(N / 2);
    }
    // The logging rule: A logged every message (probes too); B and C logged only what entered through them.
    const local = await connect(b.ws(stream));
    local.ws.send("probe-local-b");
    await waitFor(async () => (await count(a, stream)) === N + probes, "A's log to hold the run", 60_000);
    await waitFor(async () => (await count(b, stream)) >= 1, "B's log to hold its own message", 60_000);
    expect(await count(b, stream)).toBe(1);
    expect(await count(c, stream)).toBe(0);
    // A has a reader of the stream (its publisher's connection), so B's own message went to A, once.
    await waitFor(async () => (await a.metric("switchyard_cluster_received_total")) >= 1, "A to receive B's message", 30_000);
    expect(await a.metric("switchyard_cluster_received_total")).toBe(1);
    // B took in the run and the probes sent once its interest had reached A's NATS server.
    const probesSeen = subB.messages.filter((m) => typeof m === "string" && m.startsWith("probe-") && m !== "probe-local-b").length;
    expect(probes).toBeGreaterThanOrEqual(probesSeen);
    expect(await b.metric("switchyard_cluster_received_total")).toBe(N + probesSeen);
    for (const s of [subB, subC, pub, local]) s.close();
  }, 300_000);

  it("sends nothing across the NATS routes for a stream no other node is interested in, and starts when one is", async () => {
    const nats = await natsCluster();
    const [a, b] = await Promise.all([node("a", [nats[0]!.url]), node("b", [nats[1]!.url])]);
    await joined(a, b);
    const routesOut = async () => (await nats[0]!.monitor<{ routes: { out_msgs: number }[] }>("/routez")).routes.reduce((n, r) => n + r.out_msgs, 0);
    const aIn = async () => (await nats[0]!.monitor<{ connections: { name: string; in_msgs: number }[] }>("/connz")).connections.find((x) => x.name === "switchyard a")?.in_msgs ?? 0;
    const stream = "quiet/one";
    const pub = await connect(a.ws(stream));
    const before = await routesOut();
    const inBefore = await aIn();
    await publishRun(pub, 0, 500);
    // A published all 500 to its NATS server (it publishes whatever enters it) …
    await waitFor(async () => (await aIn()) - inBefore >= 500, "A's NATS server to receive the 500 messages", 30_000);
    await Bun.sleep(500);
    // … and the server forwarded none of them: no other server has interest. (A route also carries
    // a few of NATS's own messages, so the count is compared with the 500, not with 0.)
    expect((await routesOut()) - before).toBeLessThan(10);
    expect((await nats[1]!.monitor<{ connections: { name: string; out_msgs: number }[] }>("/connz")).connections.find((x) => x.name === "switchyard b")!.out_msgs).toBe(0);
    expect(await b.metric("switchyard_cluster_subjects")).toBe(0);

    const sub = await connect(b.ws(stream));
    await waitFor(async () => (await b.metric("switchyard_cluster_subjects")) === 1, "B to subscribe", 30_000);
    await probe(pub, [sub]);
    const mid = await routesOut();
    await publishRun(pub, 500, 1000);
    await waitFor(() => indexes(sub).length >= 500, "B's subscriber to get the second 500", 60_000);
    expect((await routesOut()) - mid).toBeGreaterThanOrEqual(500);
    // Interest goes with the last subscriber.
    sub.close();
    await waitFor(async () => (await b.metric("switchyard_cluster_subjects")) === 0, "B to unsubscribe", 30_000);
    pub.close();
  }, 120_000);

  it("keeps delivering when the NATS server the publisher's node uses is killed mid-stream", async () => {
    const nats = await natsCluster();
    // A may use either of the first two servers; B stays on the third, so what is measured is A's move.
    const [a, b] = await Promise.all([node("a", [nats[0]!.url, nats[1]!.url]), node("b", [nats[2]!.url])]);
    await joined(a, b);
    const stream = "survive/server";
    const sub = await connect(b.ws(stream));
    const pub = await connect(a.ws(stream));
    await probe(pub, [sub]);
    const serverOfA = async () => {
      for (const n of nats.filter((x) => x.proc)) {
        const conns = (await n.monitor<{ connections: { name: string }[] }>("/connz")).connections;
        if (conns.some((x) => x.name === "switchyard a")) return n;
      }
      return null;
    };
    const victim = (await serverOfA())!;
    expect(victim).not.toBeNull();
    const N = 6000;
    const run = publishRun(pub, 0, N, 100, 5);
    await waitFor(() => indexes(sub).length >= 2000, "2000 messages before the kill", 60_000);
    await victim.kill();
    await run;
    await waitFor(async () => (await a.metric("switchyard_cluster_connected")) === 1 && (await serverOfA()) !== null, "A to reconnect to another NATS server", 30_000);
    expect(await a.metric("switchyard_cluster_reconnects_total")).toBeGreaterThanOrEqual(1);
    // Once A is on another server, nothing is lost: a second run arrives whole, after whatever of the first
    // run arrived (how much of its tail was in flight to the killed server depends on the machine's load,
    // so the first run's last message is not waited for: it may be in the at-most-once window).
    await publishRun(pub, N, N + 1000, 100, 5);
    await waitFor(() => indexes(sub).at(-1) === N + 999, `the second run (at ${indexes(sub).at(-1)})`, 60_000);
    const all = indexes(sub);
    expectStrictlyIncreasing(all);
    const got = all.filter((i) => i < N);
    expect(got.length).toBeGreaterThanOrEqual(2000);
    expect(all.slice(got.length)).toEqual(Array.from({ length: 1000 }, (_, k) => N + k));
    // What A published while it was cut off waited in its buffer; what was in flight to the killed server (its socket buffers) is lost.
    console.log(`server kill: ${N - got.length} of ${N} messages lost while A moved to another NATS server`);
    sub.close();
    pub.close();
  }, 180_000);

  it("a subscriber of a killed node reconnects to another and continues: every message after its new subscription, in order, none twice", async () => {
    const nats = await natsCluster();
    const [a, b, c] = await Promise.all([node("a", [nats[0]!.url]), node("b", [nats[1]!.url]), node("c", [nats[2]!.url])]);
    await joined(a, b, c);
    const stream = "move/me";
    const onB = await connect(b.ws(stream));
    const pub = await connect(a.ws(stream));
    await probe(pub, [onB]);
    let i = 0;
    let publishing = true;
    const run = (async () => {
      while (publishing) {
        for (let k = 0; k < 10; k++) pub.ws.send(payload(i++));
        await Bun.sleep(5);
      }
    })();
    await waitFor(() => indexes(onB).length >= 300, "300 messages on B", 60_000);
    await b.kill();
    await onB.closed;
    const before = indexes(onB);
    const onC = await connect(c.ws(stream));
    await waitFor(() => indexes(onC).length >= 300, "300 messages on C after the move", 60_000);
    publishing = false;
    await run;
    const last = i - 1;
    await waitFor(() => indexes(onC).at(-1) === last, `the last message ${last} on C`, 60_000);
    const after = indexes(onC);
    // "Continues": nothing it had is sent again, and from its first message on C every later one arrives, in order.
    expect(after[0]!).toBeGreaterThan(before.at(-1)!);
    expect(after).toEqual(Array.from({ length: last - after[0]! + 1 }, (_, k) => after[0]! + k));
    // The messages published while it moved are the at-most-once window (docs/CLUSTER.md).
    console.log(`node kill: ${after[0]! - before.at(-1)! - 1} messages published while the subscriber moved from B to C were not delivered to it`);
    onC.close();
    pub.close();
  }, 180_000);

  it("serves local clients as before when NATS is entirely down, alerts, and recovers when it is back", async () => {
    const nats = await natsCluster();
    const slack = startFakeSlack();
    cleanups.push(() => slack.stop());
    const [a, b] = await Promise.all([node("a", [nats[0]!.url], {}, { SWITCHYARD_SLACK_WEBHOOK_URL: slack.url("ok") }), node("b", [nats[1]!.url])]);
    await joined(a, b);
    const stream = "outage/x";
    const remote = await connect(b.ws(stream));
    const pub = await connect(a.ws(stream));
    await probe(pub, [remote]);
    await stopNatsCluster(nats);
    await waitFor(async () => (await a.metric("switchyard_cluster_connected")) === 0, "A to see NATS gone", 30_000);
    // Local traffic: every message, at once, publish never refused.
    const local = await connect(a.ws(stream));
    await publishRun(pub, 0, 200);
    await waitFor(() => indexes(local).length >= 200, "200 local messages with NATS down", 30_000);
    expect(indexes(local)).toEqual(Array.from({ length: 200 }, (_, k) => k));
    await liveTraffic(a.url, "outage/other");
    expect(await a.metric("switchyard_cluster_buffered_total")).toBeGreaterThanOrEqual(200);
    const texts = () => slack.received.map((m) => m.text);
    await waitFor(() => texts().some((t) => t.startsWith("Cut off from the NATS cluster")), "the cluster alert", 60_000);
    expect(texts().find((t) => t.startsWith("Cut off"))).toContain(nats[0]!.url);

    for (const n of nats) await n.start();
    await routesUp(nats);
    await joined(a, b);
    await waitFor(() => texts().some((t) => t.startsWith("Resolved: Connected to the NATS cluster again")), "the all-clear", 60_000);
    // Cross-node traffic flows again.
    await probe(pub, [remote], "probe-after");
    local.close();
    remote.close();
    pub.close();
  }, 180_000);

  it("never echoes: A and B both publishing, each subscriber gets each message once", async () => {
    const nats = await natsCluster();
    const [a, b] = await Promise.all([node("a", [nats[0]!.url]), node("b", [nats[1]!.url])]);
    await joined(a, b);
    const stream = "chat";
    const subA = await connect(a.ws(stream));
    const subB = await connect(b.ws(stream));
    const pubA = await connect(a.ws(stream));
    const pubB = await connect(b.ws(stream));
    const probesA = await probe(pubA, [subB], "probe-a");
    const probesB = await probe(pubB, [subA], "probe-b");
    const N = 1000;
    const send = async (p: TestClient, tag: string) => {
      for (let i = 0; i < N; i++) {
        p.ws.send(`${tag}-${i}`);
        if (i % 100 === 99) await Bun.sleep(1);
      }
    };
    await Promise.all([send(pubA, "a"), send(pubB, "b")]);
    const of = (s: TestClient, tag: string) => s.messages.filter((m): m is string => typeof m === "string" && m.startsWith(`${tag}-`));
    for (const s of [subA, subB]) await waitFor(() => of(s, "a").length >= N && of(s, "b").length >= N, "both runs on both subscribers", 60_000);
    await Bun.sleep(1000);
    for (const s of [subA, subB]) for (const tag of ["a", "b"]) expect(of(s, tag)).toEqual(Array.from({ length: N }, (_, k) => `${tag}-${k}`));
    // Each node published only what entered it, and received only the other's.
    const sentA = N + probesA;
    const sentB = N + probesB;
    expect(await a.metric("switchyard_cluster_published_total")).toBe(sentA);
    expect(await b.metric("switchyard_cluster_published_total")).toBe(sentB);
    const seen = (sub: TestClient, tag: string) => sub.messages.filter((m) => typeof m === "string" && m.startsWith(tag)).length;
    expect(await a.metric("switchyard_cluster_received_total")).toBe(N + seen(subA, "probe-b"));
    expect(await b.metric("switchyard_cluster_received_total")).toBe(N + seen(subB, "probe-a"));
    for (const s of [subA, subB, pubA, pubB]) s.close();
  }, 120_000);

  it("counts and drops malformed and foreign messages on the stream subjects, and keeps serving", async () => {
    const nats = await natsCluster();
    // A silence rule on every stream makes B subscribe to the whole stream space, overlapping its subscriber's subject.
    const b = await node("b", [nats[0]!.url], { max_message_bytes: 1000, alert_silent_streams: [{ pattern: "*", seconds: 3600 }] });
    await joined(b);
    const sub = await connect(b.ws("victim"));
    await waitFor(async () => (await b.metric("switchyard_cluster_subjects")) === 2, "B to subscribe to the stream and the silence pattern", 30_000);
    const nc = await natsConnect({ servers: nats[0]!.url });
    cleanups.push(() => nc.close());
    let seq = 0;
    const hdr = (o: { node?: string; type?: string; seq?: number } = {}) => {
      const h = natsHeaders();
      h.set("Sy-Node", o.node ?? "intruder");
      h.set("Sy-Run", "r1");
      h.set("Sy-Seq", String(o.seq ?? ++seq));
      h.set("Sy-Ts", "0");
      h.set("Sy-Type", o.type ?? "text");
      return h;
    };
    // A well-formed message from a node B never saw is delivered (once, although two subscriptions match it).
    await waitFor(async () => {
      nc.publish("switchyard.s.victim", `ok-${seq + 1}`, { headers: hdr() });
      await Bun.sleep(100);
      return sub.messages.length > 0;
    }, "a well-formed foreign message to arrive", 30_000);
    const good = [...sub.messages];
    nc.publish("switchyard.s.victim", "no headers");
    nc.publish("switchyard.s.victim", "bad type", { headers: hdr({ type: "weird" }) });
    nc.publish("switchyard.s.victim", "x".repeat(2000), { headers: hdr() });
    nc.publish("switchyard.s.victim", new Uint8Array([0xff, 0xfe]), { headers: hdr({ type: "text" }) });
    nc.publish("switchyard.s.victim", "from myself", { headers: hdr({ node: "b" }) });
    nc.publish("switchyard.s.victim", "replayed", { headers: hdr({ seq: 1 }) });
    nc.publish("switchyard.s._2A", "star", { headers: hdr() });
    nc.publish("switchyard.s.victim_zz", "undecodable", { headers: hdr() });
    nc.publish("switchyard.s.victim", "last-good", { headers: hdr() });
    await nc.flush();
    await waitFor(() => sub.messages.includes("last-good"), "the last good message", 30_000);
    await Bun.sleep(300);
    expect(sub.messages).toEqual([...good, "last-good"]);
    for (const reason of ["bad_headers", "too_large", "bad_payload", "same_node_id", "duplicate", "bad_subject"]) {
      expect(await b.metric(`switchyard_cluster_dropped_total{reason="${reason}"}`)).toBeGreaterThan(0);
    }
    expect(await b.metric(`switchyard_cluster_dropped_total{reason="refused"}`)).toBe(0);
    await liveTraffic(b.url, "still/here");
    sub.close();
  }, 120_000);
});
