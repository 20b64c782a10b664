import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { Database } from "bun:sqlite";
import { DuckDBInstance } from "@duckdb/node-api";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { connect as natsConnect, headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { ClusterLink, HEADER, NODE_FORGOTTEN_MS, NODES_SEEN_MAX, PENDING_ENTRY_BYTES } from "../app/cluster/link.ts";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { clusterView, nodeStatus } from "../app/cluster/status.ts";
import { runCompactJob } from "../app/log/compact-process.ts";
import { Offloader } from "../app/log/offloader.ts";
import { OffloadState } from "../app/log/offload-state.ts";
import { RemoteCache } from "../app/log/remote-cache.ts";
import { STATUS_SUBJECT, streamSubject } from "../app/cluster/subjects.ts";
import { DEFAULT_SETTINGS, type Settings } from "../app/config/settings.ts";
import { systemClock } from "../app/core/clock.ts";
import { silentLogger, type Logger } from "../app/core/logger.ts";
import { Hub } from "../app/hub/hub.ts";
import { startNatsCluster, stopNatsCluster, type NatsNode } from "./support/nats.ts";
import { listKeys, S3RVER_KEYS, startTestS3, type TestS3 } from "./support/s3.ts";
import { freeTcpPort, offsetClock, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

/** A link to a NATS address nobody listens on (never started: it stays disconnected), delivering what a real hub delivers. */
function disconnectedLink(bufferBytes: number) {
  const hub = new Hub({ settings: () => DEFAULT_SETTINGS, clock: systemClock, logger: silentLogger });
  const link = new ClusterLink({
    servers: [`nats://127.0.0.1:${freeTcpPort()}`], nodeId: "a", hub, logger: silentLogger, bufferBytes,
    interest: () => new Set(), status: () => ({}), maxMessageBytes: () => 1 << 20,
  });
  return { hub, link };
}

/** A node "here" (access token) on a one-server NATS cluster where a raw client answers the status subject with `reply`. */
async function withStatusReply(reply: unknown, fn: (srv: TestServer) => Promise<void>): Promise<void> {
  const nats = await startNatsCluster(1);
  const srv = await startTestServer({ access: "token" }, { nodeId: "here", nats: [nats[0]!.url] });
  const raw = await natsConnect({ servers: nats[0]!.url });
  try {
    raw.subscribe(STATUS_SUBJECT, { callback: (_e, m) => void m.respond(JSON.stringify(reply)) });
    await raw.flush();
    await fn(srv);
  } finally {
    await raw.close();
    await srv.close();
    await stopNatsCluster(nats);
  }
}

/** An Offloader for node "n" with s3rver's keys, offloading on, and these settings over the defaults. */
function testOffloader(dataDir: string, logger: Logger, settings: Partial<Settings>, opts: { now?: () => number } = {}): Offloader {
  return new Offloader({
    dataDir, nodeId: "n", logger, retryMaxMs: 500, credentials: () => ({ ...S3RVER_KEYS, source: "settings" }), ...opts,
    settings: () => ({ ...DEFAULT_SETTINGS, offload_enabled: true, ...settings }),
  });
}

describe("cluster buffer while NATS is down", () => {
  it("a flood of 1-byte messages cannot hold more entries than the byte bound allows (each entry's own cost is counted)", () => {
    const bufferBytes = 1024 * 1024;
    const { link } = disconnectedLink(bufferBytes);
    const sent = 100_000;
    for (let i = 1; i <= sent; i++) link.deliver({ stream: "flood", ts: i, seq: i, origin: "ws", data: "x", size: 1 } as Parameters<ClusterLink["deliver"]>[0]);
    const s = link.state();
    // Before the fix every 1-byte message counted 1 byte: all 100,000 were kept (about 2 KB of memory each).
    expect(s.buffered).toBeLessThanOrEqual(Math.floor(bufferBytes / (1 + PENDING_ENTRY_BYTES)));
    expect(s.buffered + s.bufferDropped).toBe(sent);
    expect(s.bufferDropped).toBeGreaterThan(0);
    expect(s.pending_bytes).toBeLessThanOrEqual(bufferBytes);
  });
});

describe("nodes seen over NATS", () => {
  let nats: NatsNode[] = [];
  let link: ClusterLink | null = null;
  let raw: NatsConnection | null = null;
  let hub: Hub;

  beforeAll(async () => {
    nats = await startNatsCluster(1);
    hub = new Hub({ settings: () => DEFAULT_SETTINGS, clock: systemClock, logger: silentLogger });
    link = new ClusterLink({
      servers: [nats[0]!.url], nodeId: "me", hub, logger: silentLogger,
      interest: () => new Set([streamSubject("s")]), status: () => nodeStatus(hub, "me", "test"), maxMessageBytes: () => 1 << 20,
    });
    link.start();
    raw = await natsConnect({ servers: nats[0]!.url });
    await waitFor(() => link!.subscribed().includes(streamSubject("s")), "the link to subscribe", 30_000);
    // The link's subscription is on the server once a round trip of the link's has passed; the raw client's flush is not enough, so wait on the server's count.
    await waitFor(async () => (await nats[0]!.monitor<{ num_subscriptions: number }>("/subsz")).num_subscriptions >= 2, "the subscription on the server", 30_000);
  }, 60_000);

  afterAll(async () => {
    await raw?.close();
    await link?.stop();
    await stopNatsCluster(nats);
  });

  it("messages under thousands of made-up node ids leave the map of nodes seen bounded, the most recent kept", async () => {
    const ids = NODES_SEEN_MAX + 500;
    for (let i = 1; i <= ids; i++) {
      const h = natsHeaders();
      h.set(HEADER.node, `fake-${i}`);
      h.set(HEADER.run, "r1");
      h.set(HEADER.seq, "1");
      h.set(HEADER.type, "text");
      raw!.publish(streamSubject("s"), "x", { headers: h });
    }
    await raw!.flush();
    await waitFor(() => link!.counters.received === ids, `all ${ids} messages to arrive`, 30_000);
    // Before: one entry per id ever heard of, for ever (an attacker on NATS grows it without end; every one was then listed as missing).
    expect(link!.nodesSeen.size).toBeLessThanOrEqual(NODES_SEEN_MAX);
    expect(link!.nodesSeen.has(`fake-${ids}`)).toBe(true);
    expect(link!.nodesSeen.has("fake-1")).toBe(false);
  }, 60_000);

  it("a status reply whose node is not a valid node id is not a node (not listed, not remembered)", async () => {
    const evil = "x".repeat(10_000);
    const sub = raw!.subscribe(STATUS_SUBJECT, {
      callback: (_e, m) => {
        m.respond(JSON.stringify({ node: evil, version: "1", ts: "", connections: 0, streams: [], streams_total: 0 }));
      },
    });
    await raw!.flush();
    const view = await clusterView(link!, nodeStatus(hub, "me", "test"), 1000);
    sub.unsubscribe();
    expect(view.nodes.map((n) => n.node)).toEqual(["me"]);
    expect(link!.nodesSeen.has(evil)).toBe(false);
    expect(view.missing).not.toContain(evil);
  }, 30_000);

  it("a node not heard of for an hour is forgotten (not missing for ever)", () => {
    const now = Date.now();
    link!.seen("gone", now);
    expect(link!.nodesSeen.has("gone")).toBe(true);
    link!.seen("me", now + NODE_FORGOTTEN_MS + 1);
    expect(link!.nodesSeen.has("gone")).toBe(false);
    expect([...link!.nodesSeen.keys()]).toEqual(["me"]);
  });
});

/** Posts `n` text messages to `stream`, then moves the clock past the segment age and posts once more, which seals the segment. */
async function postAndSeal(srv: TestServer, clock: ReturnType<typeof offsetClock>, stream: string, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${srv.url}/api/streams/${encodeURIComponent(stream)}/messages`, { method: "POST", body: `${tag} #${i}`, headers: { "content-type": "text/plain" } });
    expect(r.status).toBeLessThan(300);
  }
  clock.advance(1100);
  const r = await fetch(`${srv.url}/api/streams/seal/messages`, { method: "POST", body: "seal", headers: { "content-type": "text/plain" } });
  expect(r.status).toBeLessThan(300);
}

describe("two boxes offloading under the same node id", () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3.close();
  });

  it("never overwrite each other's objects: the second box's pass fails with what to do, its files stay here unverified, the first box's rows stay whole in the store", async () => {
    const settings = { offload_enabled: true, offload_s3_url: s3.url, offload_bucket: s3.bucket, offload_prefix: "clash", log_segment_seconds: 1, log_compact_seconds: 0 };
    // The default node id is the host name: a fleet of boxes made from one image shares it.
    const clocks = [offsetClock(), offsetClock()];
    const boxes = [
      await startTestServer(settings, { nodeId: "raspberrypi", clock: clocks[0], s3Credentials: S3RVER_KEYS }),
      await startTestServer(settings, { nodeId: "raspberrypi", clock: clocks[1], s3Credentials: S3RVER_KEYS }),
    ];
    const tmp = tempDir();
    try {
      await postAndSeal(boxes[0]!, clocks[0]!, "lab", 5, "first");
      await postAndSeal(boxes[1]!, clocks[1]!, "lab", 3, "second");
      for (const b of boxes) expect(await b.compactor.runOnce()).toMatchObject({ ok: true });
      await boxes[0]!.offloader.runOnce();
      expect(boxes[0]!.offloader.status()).toMatchObject({ pending_files: 0, failing_since: null });
      const before = await listKeys(s3.client, "clash/");
      await boxes[1]!.offloader.runOnce();
      // Before: the second box replaced the first's objects of the same names, and counted its own as verified.
      const second = boxes[1]!.offloader.status();
      expect(second.failing_since).not.toBeNull();
      expect(second.last_error).toContain("already holds an object this box did not write");
      expect(second.last_error).toContain("give each box its own --node-id");
      expect(second.verified_files).toBe(0);
      expect(second.pending_files).toBeGreaterThan(0);
      const state = OffloadState.open(boxes[1]!.dataDir);
      try {
        expect(state.verifiedPaths().size).toBe(0);
      } finally {
        state.close();
      }
      expect(await listKeys(s3.client, "clash/")).toEqual(before);
      // The first box's rows are whole in the store.
      const rows: { body: string }[] = [];
      for (const { key } of await listKeys(s3.client, "clash/")) {
        if (!key.includes("stream=lab/")) continue;
        const to = join(tmp.dir, key);
        mkdirSync(dirname(to), { recursive: true });
        writeFileSync(to, new Uint8Array(await s3.client.file(key).arrayBuffer()));
        const db = await DuckDBInstance.create(":memory:");
        const conn = await db.connect();
        try {
          const r = await conn.runAndReadAll(`SELECT data::VARCHAR AS body FROM read_parquet('${to.replaceAll("'", "''")}', hive_partitioning = false)`);
          rows.push(...(r.getRowObjectsJson() as { body: string }[]));
        } finally {
          conn.closeSync();
          db.closeSync();
        }
      }
      expect(rows.map((r) => r.body).sort()).toEqual(Array.from({ length: 5 }, (_, i) => `first #${i}`));
    } finally {
      for (const b of boxes) await b.close();
      tmp.remove();
    }
  }, 120_000);
});

describe("GET /api/streams?scope=cluster with a malformed status reply on NATS", () => {
  it("answers 200 with the documented fields only; stream entries that name no valid stream are left out, also for a token limited to some streams", async () => {
    // Anyone on NATS can answer the status subject: here with a stream entry that is null, one whose name is a number, and a valid one, plus a field of its own.
    await withStatusReply({
      node: "odd", version: "1", ts: "x", connections: 1, streams_total: 3, nats: { last_error: "internal" },
      streams: [null, { stream: 5 }, { stream: "lab/one", subscribers: 1 }],
    }, async (srv) => {
      const token = await signStreamToken(srv.secret, { topic: "lab/*", scopes: ["read"], ttlSeconds: 600 });
      await waitFor(() => srv.cluster!.state().connected, "the node to join NATS", 30_000);
      // Before: the token's topic filter ran on the null entry and the answer was a 500.
      const r = await fetch(`${srv.url}/api/streams?scope=cluster&wait_ms=1000`, { headers: { Authorization: `Bearer ${token}` } });
      expect(r.status).toBe(200);
      const body = await r.json() as { nodes: Record<string, unknown>[] };
      const odd = body.nodes.find((n) => n.node === "odd")!;
      expect(Object.keys(odd).sort()).toEqual(["connections", "node", "streams", "streams_total", "ts", "version"]);
      expect(odd.streams).toEqual([{ stream: "lab/one", subscribers: 1 }]);
    });
  }, 60_000);
});

describe("the remote cache's bound while it downloads", () => {
  it("makes room before downloading: the cache folder never holds more than its size, also in the middle of a query's downloads", async () => {
    const s3 = await startTestS3();
    const tmp = tempDir();
    try {
      const MiB = 1048576;
      const key = (n: string) => `fleet/d/node=n1/stream=s/date=2026-01-0${n}/seg${n}_0_0.parquet`;
      for (const n of ["1", "2"]) await s3.client.write(key(n), new Uint8Array(6 * MiB).fill(Number(n)));
      const dir = join(tmp.dir, "cache");
      const cache = new RemoteCache(dir, 8 * MiB);
      const { objects } = await RemoteCache.list(s3.client, "fleet/d", { streams: ["s"] });
      await cache.fetch(s3.client, "fleet/d", objects.filter((o) => o.key === key("1")));
      // Bytes of every file in the cache folder (cached files and a download's part file), sampled while the next query downloads.
      const onDisk = () => (readdirSync(dir, { recursive: true }) as string[]).reduce((a, f) => {
        const st = statSync(join(dir, f), { throwIfNoEntry: false });
        return a + (st?.isFile() && !f.endsWith("index.json") ? st.size : 0);
      }, 0);
      let peak = 0;
      const sampler = setInterval(() => { peak = Math.max(peak, onDisk()); }, 1);
      try {
        await cache.fetch(s3.client, "fleet/d", objects.filter((o) => o.key === key("2")));
      } finally {
        clearInterval(sampler);
      }
      peak = Math.max(peak, onDisk());
      // Before: file 1 stayed until file 2 was whole, 12 MiB in a cache of 8.
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(8 * MiB);
      expect(cache.bytes).toBe(6 * MiB);
    } finally {
      tmp.remove();
      await s3.close();
    }
  }, 60_000);
});

describe("GET /api/streams?scope=cluster under a flood of requests", () => {
  it("asks the cluster once for requests that come together: a client cannot make every node answer as fast as it sends", async () => {
    const nats = await startNatsCluster(1);
    const srv = await startTestServer({}, { nodeId: "here", nats: [nats[0]!.url] });
    const raw = await natsConnect({ servers: nats[0]!.url });
    try {
      // Another node, counting the status requests that reach it.
      let asked = 0;
      raw.subscribe(STATUS_SUBJECT, {
        callback: (_e, m) => {
          asked++;
          m.respond(JSON.stringify({ node: "other", version: "1", ts: "", connections: 0, streams: [], streams_total: 0 }));
        },
      });
      await raw.flush();
      await waitFor(() => srv.cluster!.state().connected, "the node to join NATS", 30_000);
      const answers = await Promise.all(Array.from({ length: 40 }, () => fetch(`${srv.url}/api/streams?scope=cluster&wait_ms=300`).then(async (r) => ({ status: r.status, body: await r.json() as { nodes: { node: string }[] } }))));
      for (const a of answers) {
        expect(a.status).toBe(200);
        expect(a.body.nodes.map((n) => n.node)).toEqual(["here", "other"]);
      }
      // Before: 40 requests, each answered by every node of the cluster.
      expect(asked).toBeGreaterThanOrEqual(1);
      expect(asked).toBeLessThanOrEqual(2);
    } finally {
      await raw.close();
      await srv.close();
      await stopNatsCluster(nats);
    }
  }, 60_000);
});

describe("retention with offloading on", () => {
  it("keeps a file whose size is not the one verified at its path (a file reusing a verified file's name is not verified)", async () => {
    const tmp = tempDir();
    // A store nobody listens on: every upload fails, so only what offload.db says is verified may go.
    const url = `http://127.0.0.1:${freeTcpPort()}`;
    const offloader = testOffloader(tmp.dir, silentLogger, { offload_s3_url: url, offload_bucket: "logs", offload_prefix: "p", log_retention_days: 30, log_retention_bytes: 0 });
    try {
      const logsDir = join(tmp.dir, "logs");
      const part = join(logsDir, "stream=x", "date=2020-01-01");
      mkdirSync(part, { recursive: true });
      // A file verified long ago at this path had 100 bytes; the file there now (segment numbers started again, say) has 300 and was never uploaded.
      writeFileSync(join(part, "seg1_0_0.parquet"), new Uint8Array(300));
      const state = OffloadState.open(tmp.dir);
      await state.retarget(`${url} logs p`, new Set()); // verified in this very store
      state.record({ path: "stream=x/date=2020-01-01/seg1_0_0.parquet", key: "p/node=n/stream=x/date=2020-01-01/seg1_0_0.parquet", size: 100, md5: "0".repeat(32), etag: "", verifiedAt: new Date().toISOString() });
      state.close();
      await offloader.runOnce();
      expect(offloader.status().failing_since).not.toBeNull();
      // Before: deleted, as the path alone was looked up.
      expect(existsSync(join(part, "seg1_0_0.parquet"))).toBe(true);
      expect(offloader.lastRetention?.kept.files).toBe(1);
      // The same file at the verified size goes, as before (the upload still fails: retention runs all the same).
      writeFileSync(join(part, "seg1_0_0.parquet"), new Uint8Array(100));
      await offloader.runOnce();
      expect(existsSync(join(part, "seg1_0_0.parquet"))).toBe(false);
      expect(existsSync(part)).toBe(false);
      expect(offloader.lastRetention?.removed.map((r) => r.path)).toEqual([part]);
    } finally {
      await offloader.stop();
      tmp.remove();
    }
  }, 60_000);

  it("applies the size rule to verified files only, oldest date first, keeping an unverified one and saying so", async () => {
    const tmp = tempDir();
    const url = `http://127.0.0.1:${freeTcpPort()}`;
    const lines: string[] = [];
    const logger = { debug() {}, info() {}, warn: (m: string) => void lines.push(m), error: (m: string) => void lines.push(m) };
    const offloader = testOffloader(tmp.dir, logger, { offload_s3_url: url, offload_bucket: "logs", offload_prefix: "p", log_retention_days: 0, log_retention_bytes: 250 });
    try {
      const logsDir = join(tmp.dir, "logs");
      const state = OffloadState.open(tmp.dir);
      await state.retarget(`${url} logs p`, new Set());
      const dates = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"];
      for (const [i, date] of dates.entries()) {
        mkdirSync(join(logsDir, "stream=s", `date=${date}`), { recursive: true });
        writeFileSync(join(logsDir, "stream=s", `date=${date}`, "seg1_0_0.parquet"), new Uint8Array(100));
        // The oldest is not verified (its upload fails: nobody listens there).
        if (i > 0) state.record({ path: `stream=s/date=${date}/seg1_0_0.parquet`, key: `p/node=n/stream=s/date=${date}/seg1_0_0.parquet`, size: 100, md5: "0".repeat(32), etag: "", verifiedAt: new Date().toISOString() });
      }
      state.close();
      await offloader.runOnce();
      const present = dates.map((d) => existsSync(join(logsDir, "stream=s", `date=${d}`, "seg1_0_0.parquet")));
      // 400 bytes over a limit of 250: the unverified oldest stays (still counted), the next two go, the newest stays.
      expect(present).toEqual([true, false, false, true]);
      expect(offloader.lastRetention?.kept).toEqual({ files: 1, bytes: 100 });
      expect(offloader.lastRetention?.removed.map((r) => r.reason)).toEqual(["log over 250 bytes; verified in the remote store", "log over 250 bytes; verified in the remote store"]);
      expect(lines).toContain("log retention kept files not yet verified in the remote store");
    } finally {
      await offloader.stop();
      tmp.remove();
    }
  }, 60_000);

  it("the compaction run leaves Parquet retention to the offloader: a verified file past retention is not removed there", async () => {
    const tmp = tempDir();
    try {
      const logsDir = join(tmp.dir, "logs");
      const part = join(logsDir, "stream=x", "date=2020-01-01");
      mkdirSync(part, { recursive: true });
      writeFileSync(join(part, "seg1_0_0.parquet"), new Uint8Array(100));
      const state = OffloadState.open(tmp.dir);
      state.record({ path: "stream=x/date=2020-01-01/seg1_0_0.parquet", key: "p/node=n/stream=x/date=2020-01-01/seg1_0_0.parquet", size: 100, md5: "0".repeat(32), etag: "", verifiedAt: new Date().toISOString() });
      state.close();
      // Before: the compaction process read the verified rows once and removed the file, whatever the hub's audit found meanwhile.
      const outcome = await runCompactJob({ segments: [], logsDir, retention: { days: 30, bytes: 0 }, memoryMb: 64, giveUp: [], offload: true });
      expect(outcome).toMatchObject({ ok: true, removed: [] });
      expect(existsSync(join(part, "seg1_0_0.parquet"))).toBe(true);
      // Offloading off: the compaction run applies retention, whole partitions, as always.
      const off = await runCompactJob({ segments: [], logsDir, retention: { days: 30, bytes: 0 }, memoryMb: 64, giveUp: [], offload: false });
      expect(off).toMatchObject({ ok: true, removed: [{ path: part, bytes: 100, reason: "older than 30 days" }] });
      expect(existsSync(part)).toBe(false);
    } finally {
      tmp.remove();
    }
  }, 60_000);
});

describe("the hourly audit against retention", () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3.close();
  });

  it("a file past retention whose object the audit finds corrupted is uploaded again before it goes, with compaction running at the same time", async () => {
    const DAY = 86_400_000;
    const clock = offsetClock();
    // Messages three days old; retention is 1 day, but the files only go once verified remote.
    clock.advance(-3 * DAY);
    const srv = await startTestServer({ offload_enabled: true, offload_s3_url: s3.url, offload_bucket: s3.bucket, offload_prefix: "audit", log_segment_seconds: 1, log_compact_seconds: 0 }, { nodeId: "node-a", clock, s3Credentials: S3RVER_KEYS, offloadRetryMaxMs: 500 });
    try {
      for (let round = 0; round < 3; round++) {
        await postAndSeal(srv, clock, `old${round}`, 3, `seal${round}`);
        expect((await srv.compactor.runOnce()).ok).toBe(true);
        // Uploaded and verified while retention is off; the file stays here.
        await srv.offloader.runOnce();
        const files = readdirSync(join(srv.dataDir, "logs", `stream=old${round}`), { recursive: true }).filter((f) => String(f).endsWith(".parquet")).map((f) => `stream=old${round}/${f}`);
        expect(files).toHaveLength(1);
        const path = files[0]!;
        const key = `audit/node=node-a/${path}`;
        const good = new Uint8Array(await s3.client.file(key).arrayBuffer());
        expect(good.length).toBeGreaterThan(0);
        // The object is damaged in the store (same size, other bytes), then retention comes into force.
        const bad = good.slice();
        bad[bad.length - 20] = bad[bad.length - 20]! ^ 0xff;
        await s3.client.write(key, bad);
        expect((await fetch(`${srv.url}/api/settings`, { method: "PATCH", headers: srv.adminHeaders, body: JSON.stringify({ log_retention_days: 1 }) })).status).toBe(200);
        // The audit and a compaction run at once (the run merges and, before, applied retention with the rows it read at its start).
        await postAndSeal(srv, clock, "fresh", 1, `seal${round}`);
        const [compaction] = await Promise.all([srv.compactor.runOnce(), srv.offloader.runOnce({ audit: true })]);
        expect(compaction.ok).toBe(true);
        await srv.offloader.runOnce();
        // Never gone here while the object is wrong: once the file went, the store holds the good bytes.
        const local = existsSync(join(srv.dataDir, "logs", path));
        const remote = new Uint8Array(await s3.client.file(key).arrayBuffer());
        expect(local || Buffer.compare(remote, good) === 0).toBe(true);
        // And with the pass done, the object is whole again and the file gone (retention applied by the offloader).
        expect(Buffer.compare(remote, good)).toBe(0);
        expect(local).toBe(false);
        expect((await fetch(`${srv.url}/api/settings`, { method: "PATCH", headers: srv.adminHeaders, body: JSON.stringify({ log_retention_days: 0 }) })).status).toBe(200);
      }
      expect(srv.offloader.status().mismatches_total).toBe(3);
    } finally {
      await srv.close();
    }
  }, 180_000);
});

describe("moving the offload to another store", () => {
  it("forgets, batch by batch, the rows of the files still here and keeps those of files retention removed, then notes the new store", async () => {
    const tmp = tempDir();
    try {
      const state = OffloadState.open(tmp.dir);
      await state.retarget("old", new Set());
      const path = (i: number) => `stream=s/date=2026-01-01/seg${i}_0_0.parquet`;
      for (let i = 0; i < 1234; i++) state.record({ path: path(i), key: `p/${path(i)}`, size: 1, md5: "0".repeat(32), etag: "", verifiedAt: "" });
      // Every third file is still here; the others were removed by retention (their only copy is in the old store).
      const here = new Set(Array.from({ length: 1234 }, (_, i) => i).filter((i) => i % 3 === 0).map(path));
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 0);
      try {
        await state.retarget("new", here, 100);
      } finally {
        clearInterval(ticker);
      }
      expect(state.target()).toBe("new");
      const left = state.verifiedPaths();
      expect(left.size).toBe(1234 - here.size);
      for (const p of here) expect(left.has(p)).toBe(false);
      // The event loop ran between batches (13 of them here).
      expect(ticks).toBeGreaterThan(0);
      state.close();
    } finally {
      tmp.remove();
    }
  });
});

describe("query --remote downloads running at the same time", () => {
  it("two caches on one folder download the same object at once, each through its own temporary file: both get it whole, no part file is left", async () => {
    const s3 = await startTestS3();
    const tmp = tempDir();
    try {
      const MiB = 1048576;
      const key = "fleet/p/node=n1/stream=s/date=2026-01-01/seg1_0_0.parquet";
      const body = new Uint8Array(12 * MiB);
      for (let o = 0; o < body.length; o += 65536) crypto.getRandomValues(body.subarray(o, o + 65536));
      await s3.client.write(key, body);
      const dir = join(tmp.dir, "cache");
      const { objects } = await RemoteCache.list(s3.client, "fleet/p");
      expect(objects).toHaveLength(1);
      // Two `query --remote` runs: two caches on the same folder, downloading together.
      const [a, b] = await Promise.all([new RemoteCache(dir, 64 * MiB).fetch(s3.client, "fleet/p", objects), new RemoteCache(dir, 64 * MiB).fetch(s3.client, "fleet/p", objects)]);
      // Before: both wrote `<file>.part` (each truncating it); the first renamed it away and the second failed with ENOENT.
      expect(a).toEqual(b);
      expect(Buffer.compare(readFileSync(a[0]!), body)).toBe(0);
      const parts = () => (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith(".part"));
      expect(parts()).toEqual([]);
      // A download that fails its check leaves no temporary file behind either.
      await expect(new RemoteCache(join(tmp.dir, "other"), 64 * MiB).fetch(s3.client, "fleet/p", [{ ...objects[0]!, size: body.length + 1 }])).rejects.toThrow(/gave 12582912 bytes/);
      expect((readdirSync(join(tmp.dir, "other"), { recursive: true }) as string[]).filter((f) => f.endsWith(".part"))).toEqual([]);
    } finally {
      tmp.remove();
      await s3.close();
    }
  }, 60_000);
});

describe("an own upload whose note a power cut lost", () => {
  it("is refused like another box's object, with a message that names the power cut and what to do; deleting the object as it says lets the file go up again", async () => {
    const s3 = await startTestS3();
    const clock = offsetClock();
    const srv = await startTestServer({ offload_enabled: true, offload_s3_url: s3.url, offload_bucket: s3.bucket, offload_prefix: "cut", log_segment_seconds: 1, log_compact_seconds: 0 }, { nodeId: "pi", clock, s3Credentials: S3RVER_KEYS, offloadRetryMaxMs: 500 });
    try {
      await postAndSeal(srv, clock, "lab", 3, "cut");
      expect((await srv.compactor.runOnce()).ok).toBe(true);
      await srv.offloader.runOnce();
      const key = (await listKeys(s3.client, "cut/")).map((k) => k.key).find((k) => k.includes("stream=lab/"))!;
      const path = key.slice("cut/node=pi/".length);
      // The upload ended wrong in the store (its check failed), and the power cut lost offload.db's last rows: the note of the key and the file's row.
      const good = new Uint8Array(await s3.client.file(key).arrayBuffer());
      const bad = good.slice();
      bad[bad.length - 20] = bad[bad.length - 20]! ^ 0xff;
      await s3.client.write(key, bad);
      const db = new Database(join(srv.dataDir, "offload.db"));
      db.run("PRAGMA busy_timeout = 5000");
      db.run("DELETE FROM written WHERE target_key LIKE ?", [`% ${key}`]);
      db.run("DELETE FROM verified WHERE path = ?", [path]);
      db.close();
      // After a restart the first pass lists the log; here a pass with the audit does (a pass that finds the folder unchanged does not).
      await srv.offloader.runOnce({ audit: true });
      const status = srv.offloader.status();
      expect(status.failing_since).not.toBeNull();
      expect(status.last_error).toContain("already holds an object this box did not write");
      expect(status.last_error).toContain("a power cut lost its note of that upload");
      expect(status.last_error).toContain("delete that object from the store and the next pass uploads this file again");
      expect(existsSync(join(srv.dataDir, "logs", path))).toBe(true);
      // Doing what it says: the object goes, the next pass uploads the file and verifies it.
      await s3.client.file(key).delete();
      await srv.offloader.runOnce();
      expect(srv.offloader.status()).toMatchObject({ failing_since: null, pending_files: 0 });
      expect(Buffer.compare(new Uint8Array(await s3.client.file(key).arrayBuffer()), good)).toBe(0);
    } finally {
      await srv.close();
      await s3.close();
    }
  }, 60_000);
});

describe("GET /api/streams?scope=cluster for a token that covers only some streams", () => {
  it("shows no node's connections, and counts only the streams the token may see; the admin sees the counts as the nodes gave them", async () => {
    // Another node with one stream the token covers and two it does not.
    await withStatusReply({
      node: "other", version: "1", ts: "", connections: 7, streams_total: 3,
      streams: [{ stream: "lab/one", subscribers: 1 }, { stream: "secret/a", subscribers: 3 }, { stream: "secret/b", subscribers: 3 }],
    }, async (srv) => {
      // And a stream here the token does not cover.
      expect((await fetch(`${srv.url}/api/streams/secret%2Fhere/messages`, { method: "POST", headers: { ...srv.adminHeaders, "content-type": "text/plain" }, body: "x" })).status).toBeLessThan(300);
      await waitFor(() => srv.cluster!.state().connected, "the node to join NATS", 30_000);
      const token = await signStreamToken(srv.secret, { topic: "lab/*", scopes: ["read"], ttlSeconds: 600 });
      const limited = await (await fetch(`${srv.url}/api/streams?scope=cluster&wait_ms=1000`, { headers: { Authorization: `Bearer ${token}` } })).json() as { nodes: { node: string; connections: number | null; streams_total: number; streams: unknown[] }[] };
      // Before: connections 7 and streams_total 3 for "other", and this node's own counts, told to a token that sees one stream.
      expect(limited.nodes.map((n) => [n.node, n.connections, n.streams_total, n.streams.length])).toEqual([["here", null, 0, 0], ["other", null, 1, 1]]);
      // The admin, with the same (shared) answer of the cluster, sees the counts as the nodes gave them.
      const admin = await (await fetch(`${srv.url}/api/streams?scope=cluster&wait_ms=1000`, { headers: srv.adminHeaders })).json() as typeof limited;
      const other = admin.nodes.find((n) => n.node === "other")!;
      expect([other.connections, other.streams_total, other.streams.length]).toEqual([7, 3, 3]);
      expect(admin.nodes.find((n) => n.node === "here")!.streams_total).toBeGreaterThanOrEqual(1);
    });
  }, 60_000);
});

describe("a file verified once that is gone when it is to be uploaded again", () => {
  it("is logged at warn level (its object may be all there is)", async () => {
    const s3 = await startTestS3();
    const tmp = tempDir();
    const warnings: { msg: string; fields?: Record<string, unknown> }[] = [];
    const logger = { debug() {}, info() {}, warn: (msg: string, fields?: Record<string, unknown>) => void warnings.push({ msg, fields }), error() {} };
    const offloader = testOffloader(tmp.dir, logger, { offload_s3_url: s3.url, offload_bucket: s3.bucket, offload_prefix: "gone", log_retention_days: 0, log_retention_bytes: 0 });
    try {
      const logsDir = join(tmp.dir, "logs");
      // F: verified once, its object since lost from the store. G: a big file not uploaded yet, uploaded first in the pass.
      const f = "stream=f/date=2026-01-01/seg1_0_0.parquet";
      const g = "stream=g/date=2026-01-02/seg1_0_0.parquet";
      for (const p of [f, g]) mkdirSync(dirname(join(logsDir, p)), { recursive: true });
      writeFileSync(join(logsDir, f), new Uint8Array(100));
      writeFileSync(join(logsDir, g), new Uint8Array(48 * 1048576));
      const state = OffloadState.open(tmp.dir);
      await state.retarget(`${s3.url} ${s3.bucket} gone`, new Set());
      state.record({ path: f, key: `gone/node=n/${f}`, size: 100, md5: "0".repeat(32), etag: "", verifiedAt: new Date().toISOString() });
      state.close();
      const pass = offloader.runOnce({ audit: true });
      // The pass has listed both (G pending) and is uploading G: F goes now, before the audit finds its object missing.
      await waitFor(() => offloader.status().pending_files === 1, "the pass to list the files", 30_000);
      rmSync(join(logsDir, f));
      await pass;
      expect(offloader.status().mismatches_total).toBe(1);
      // Before: returned without a word.
      const gone = warnings.find((w) => w.msg.includes("a file verified once is gone"));
      expect(gone?.fields).toMatchObject({ path: f, key: `gone/node=n/${f}` });
    } finally {
      await offloader.stop();
      tmp.remove();
      await s3.close();
    }
  }, 60_000);
});

describe("retention while the records are of another store", () => {
  it("deletes nothing while offload.db's files were verified in a store the settings no longer name (a move that failed part way), and moves them at the next pass", async () => {
    const tmp = tempDir();
    const url = `http://127.0.0.1:${freeTcpPort()}`;
    const offloader = testOffloader(tmp.dir, silentLogger, { offload_s3_url: url, offload_bucket: "logs", offload_prefix: "new", log_retention_days: 30, log_retention_bytes: 0 });
    try {
      const part = join(tmp.dir, "logs", "stream=x", "date=2020-01-01");
      mkdirSync(part, { recursive: true });
      writeFileSync(join(part, "seg1_0_0.parquet"), new Uint8Array(100));
      const state = OffloadState.open(tmp.dir);
      // Verified in the old prefix; the settings now name prefix "new".
      await state.retarget(`${url} logs old`, new Set());
      state.record({ path: "stream=x/date=2020-01-01/seg1_0_0.parquet", key: "old/node=n/stream=x/date=2020-01-01/seg1_0_0.parquet", size: 100, md5: "0".repeat(32), etag: "", verifiedAt: new Date().toISOString() });
      state.close();
      // The move of the records fails part way (a full disk, say): nothing may count as verified in the new store.
      const retarget = OffloadState.prototype.retarget;
      OffloadState.prototype.retarget = async () => {
        throw new Error("SQLITE_FULL: database or disk is full");
      };
      try {
        await offloader.runOnce();
      } finally {
        OffloadState.prototype.retarget = retarget;
      }
      expect(offloader.status().last_error).toContain("SQLITE_FULL");
      expect(existsSync(join(part, "seg1_0_0.parquet"))).toBe(true);
      // The next pass moves them (the upload there fails: nobody listens), so the file is not verified there and stays.
      await offloader.runOnce();
      expect(existsSync(join(part, "seg1_0_0.parquet"))).toBe(true);
      expect(offloader.lastRetention?.kept.files).toBe(1);
    } finally {
      await offloader.stop();
      tmp.remove();
    }
  }, 60_000);
});

describe("the remote cache's leftovers", () => {
  it("removes a download a killed run left behind (older than an hour) and keeps a fresh one", () => {
    const tmp = tempDir();
    try {
      const dir = join(tmp.dir, "remote-cache", "node=a", "stream=s", "date=2026-01-01");
      mkdirSync(dir, { recursive: true });
      const old = join(dir, "seg1.parquet.123-abcd.part");
      const fresh = join(dir, "seg2.parquet.456-efgh.part");
      writeFileSync(old, new Uint8Array(10));
      writeFileSync(fresh, new Uint8Array(10));
      const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
      utimesSync(old, twoHoursAgo, twoHoursAgo);
      new RemoteCache(join(tmp.dir, "remote-cache"), 1048576);
      expect(existsSync(old)).toBe(false);
      expect(existsSync(fresh)).toBe(true);
    } finally {
      tmp.remove();
    }
  });
});

describe("retention during a long upload backlog", () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3.close();
  });

  it("removes what is verified and past its age while the backlog is still uploading, not only after it", async () => {
    const tmp = tempDir();
    const events: string[] = [];
    const logger = { debug() {}, info() {}, warn: (m: string) => void events.push(m), error: (m: string) => void events.push(m) };
    // Each look at the clock is a minute later: the backlog "takes" minutes.
    let t = Date.now();
    const offloader = testOffloader(tmp.dir, logger, { offload_s3_url: s3.url, offload_bucket: s3.bucket, offload_prefix: "b", log_retention_days: 30, log_retention_bytes: 0 }, { now: () => (t += 61_000) });
    const upload = (Offloader.prototype as unknown as { upload: (...a: unknown[]) => Promise<void> }).upload;
    (Offloader.prototype as unknown as { upload: (...a: unknown[]) => Promise<void> }).upload = async function (this: Offloader, ...a: unknown[]) {
      events.push(`upload ${String(a[1])}`);
      return upload.apply(this, a);
    };
    try {
      const logs = join(tmp.dir, "logs");
      const old = join(logs, "stream=x", "date=2020-01-01");
      mkdirSync(old, { recursive: true });
      writeFileSync(join(old, "seg1_0_0.parquet"), new Uint8Array(100));
      const state = OffloadState.open(tmp.dir);
      await state.retarget(`${s3.url} ${s3.bucket} b`, new Set());
      state.record({ path: "stream=x/date=2020-01-01/seg1_0_0.parquet", key: "b/node=n/stream=x/date=2020-01-01/seg1_0_0.parquet", size: 100, md5: "0".repeat(32), etag: "", verifiedAt: new Date().toISOString() });
      state.close();
      const today = join(logs, "stream=y", `date=${new Date().toISOString().slice(0, 10)}`);
      mkdirSync(today, { recursive: true });
      for (let i = 1; i <= 4; i++) writeFileSync(join(today, `seg${i}_0_0.parquet`), new Uint8Array(1000 + i));
      await offloader.runOnce();
      expect(existsSync(old)).toBe(false);
      const removedAt = events.indexOf("log retention removed a partition");
      // (The hourly check, due in this pass, then finds the old file's object missing, the record's checksum being made up, and says its file is gone.)
      const uploads = events.map((e, i) => (e.startsWith("upload stream=y/") ? i : -1)).filter((i) => i >= 0);
      expect(uploads.length).toBe(4);
      // The old file went after the first upload and before the last: during the backlog, not after it.
      expect(removedAt).toBeGreaterThan(uploads[0]!);
      expect(removedAt).toBeLessThan(uploads[3]!);
    } finally {
      (Offloader.prototype as unknown as { upload: (...a: unknown[]) => Promise<void> }).upload = upload;
      await offloader.stop();
      tmp.remove();
    }
  }, 60_000);
});
