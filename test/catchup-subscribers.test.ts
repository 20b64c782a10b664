import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { Spool } from "../app/log/spool.ts";
import type { Settings } from "../app/config/settings.ts";
import { spawnServe } from "./support/cli.ts";
import { connect, type TestClient } from "./support/client.ts";
import { startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

// Real servers, DuckDB in the query process, 10,000-message replays: generous on a loaded machine.
setDefaultTimeout(180_000);

let servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers) await s.close();
  servers = [];
});

async function server(settings: Partial<Settings> = {}): Promise<TestServer> {
  const s = await startTestServer(settings);
  servers.push(s);
  return s;
}

type Envelope = { seq: number; ts: number; data: string; binary?: boolean };

/** The JSON envelopes a client received (notices, which have no seq, left out). */
function envelopes(c: TestClient): Envelope[] {
  return c.messages.map((m) => JSON.parse(String(m)) as Envelope).filter((e) => e.seq !== undefined);
}

/** Publishes `n` text messages `prefix-i` on one websocket, in bursts so the loop turns between them. */
async function publish(wsUrl: string, prefix: string, from: number, n: number): Promise<void> {
  const pub = await connect(wsUrl);
  for (let i = from; i < from + n; i++) {
    pub.ws.send(`${prefix}-${i}`);
    if (i % 500 === 499) await Bun.sleep(1);
  }
  // The publisher's own frames are all in once the server has delivered them: close after a round trip.
  await Bun.sleep(50);
  pub.close();
  await pub.closed;
}

/** Waits until the stream's last delivered seq reaches `seq`. */
async function delivered(srv: TestServer, stream: string, seq: number): Promise<void> {
  await waitFor(() => srv.hub.lastDeliveredSeq(stream) >= seq, `stream ${stream} to reach seq ${seq} (at ${srv.hub.lastDeliveredSeq(stream)})`, 60_000);
}

/** Asserts that `got` is exactly seqs from..to in order, each with its payload `prefix-(seq-1)`. */
function expectRun(got: Envelope[], from: number, to: number, payload: (seq: number) => string): void {
  expect(got.length).toBe(to - from + 1);
  const seqs = got.map((e) => e.seq);
  const wrong = seqs.findIndex((s, i) => s !== from + i);
  expect(wrong).toBe(-1);
  for (const e of got) if (e.data !== payload(e.seq)) throw new Error(`seq ${e.seq} carried ${e.data}, not ${payload(e.seq)}`);
}

describe("websocket subscribers resume with after_seq", () => {
  it("replays exactly the 10,000 missed messages in order, then continues live", async () => {
    const srv = await server();
    const stream = "rig/resume";
    const first = await connect(srv.wsUrl(stream, "envelope=json"));
    await publish(srv.wsUrl(stream), "m", 0, 100);
    await first.received(100, 30_000);
    const seen = envelopes(first);
    expectRun(seen, 1, 100, (s) => `m-${s - 1}`);
    first.close();
    await first.closed;

    await publish(srv.wsUrl(stream), "m", 100, 10_000);
    await delivered(srv, stream, 10_100);
    const again = await connect(srv.wsUrl(stream, `after_seq=${seen.at(-1)!.seq}&envelope=json`));
    await again.received(10_000, 120_000);
    await publish(srv.wsUrl(stream), "m", 10_100, 50);
    await again.received(10_050, 30_000);
    await Bun.sleep(200);
    expectRun(envelopes(again), 101, 10_150, (s) => `m-${s - 1}`);
    again.close();
  });

  it("hands off from replay to live with no gap and no duplicate while publishing goes on", async () => {
    const srv = await server();
    const stream = "busy";
    await publish(srv.wsUrl(stream), "b", 0, 5000);
    await delivered(srv, stream, 5000);
    // Publishing continues while the subscriber replays from the log and joins live.
    const publishing = publish(srv.wsUrl(stream), "b", 5000, 10_000);
    const sub = await connect(srv.wsUrl(stream, "after_seq=10&envelope=json"));
    await publishing;
    await delivered(srv, stream, 15_000);
    await sub.received(14_990, 120_000);
    await Bun.sleep(200);
    expectRun(envelopes(sub), 11, 15_000, (s) => `b-${s - 1}`);
    sub.close();
  });

  it("raw framing stays byte for byte: text as text frames, binary as binary frames", async () => {
    const srv = await server();
    const stream = "raw";
    const pub = await connect(srv.wsUrl(stream));
    pub.ws.send("text one");
    pub.ws.send(new Uint8Array([0, 255, 1, 2]));
    pub.ws.send("text two");
    await delivered(srv, stream, 3);
    pub.close();
    const sub = await connect(srv.wsUrl(stream, "after_seq=0"));
    await sub.received(3);
    expect(sub.messages[0]).toBe("text one");
    expect(sub.messages[1]).toEqual(new Uint8Array([0, 255, 1, 2]));
    expect(sub.messages[2]).toBe("text two");
    const json = await connect(srv.wsUrl(stream, "after_seq=1&envelope=json"));
    await json.received(2);
    expect(JSON.parse(String(json.messages[0]))).toEqual({ seq: 2, ts: expect.any(Number), data: Buffer.from([0, 255, 1, 2]).toString("base64"), binary: true });
    expect(JSON.parse(String(json.messages[1]))).toEqual({ seq: 3, ts: expect.any(Number), data: "text two" });
    sub.close();
    json.close();
  });
});

describe("resuming across a restart and after compaction", () => {
  it("replays the missed messages after the server was killed with SIGKILL and restarted, then continues live", async () => {
    const tmp = tempDir();
    try {
      let srv = await spawnServe(tmp.dir);
      const ws = (port: number, q = "") => `ws://127.0.0.1:${port}/ws/spin30${q ? `?${q}` : ""}`;
      const first = await connect(ws(srv.port, "envelope=json"));
      await publish(ws(srv.port), "k", 0, 50);
      await first.received(50, 30_000);
      first.close();
      await first.closed;
      // A watcher sees all 10,000 live, so they were delivered (hence written to the log) before the kill.
      const watcher = await connect(ws(srv.port, "envelope=json"));
      await publish(ws(srv.port), "k", 50, 10_000);
      await watcher.received(10_000, 60_000);
      srv.p.kill("SIGKILL");
      await srv.p.exited;
      await watcher.closed;

      srv = await spawnServe(tmp.dir);
      try {
        const again = await connect(ws(srv.port, "after_seq=50&envelope=json"));
        await again.received(10_000, 120_000);
        await publish(ws(srv.port), "k", 10_050, 20);
        await again.received(10_020, 30_000);
        await Bun.sleep(200);
        expectRun(envelopes(again), 51, 10_070, (s) => `k-${s - 1}`);
        again.close();
      } finally {
        srv.p.kill("SIGKILL");
        await srv.p.exited;
      }
    } finally {
      tmp.remove();
    }
  });

  it("replays from Parquet once the messages were compacted and their spool segments removed", async () => {
    const srv = await server({ log_segment_seconds: 1, log_compact_seconds: 1 });
    const stream = "compacted";
    await publish(srv.wsUrl(stream), "c", 0, 10_000);
    await delivered(srv, stream, 10_000);
    const parquetDir = join(srv.dataDir, "logs", `stream=${stream}`);
    const parquet = () => { try { return readdirSync(parquetDir, { recursive: true }).map(String).filter((f) => f.endsWith(".parquet")); } catch { return []; } };
    // A message on another stream now and then rolls the 1-second segments so the last one is sealed and compacted too.
    const roller = await connect(srv.wsUrl("roller"));
    await waitFor(() => {
      roller.ws.send("tick");
      return parquet().length > 0 && srv.spool.lastSeq.get(stream) === 10_000 && Spool.segments(join(srv.dataDir, "spool")).length <= 1;
    }, "the stream's segments to be compacted to Parquet", 120_000);
    roller.close();
    expect(srv.recent.after(stream, 0, 10)).toBeNull(); // memory holds only the last 100: the rest must come from Parquet
    const sub = await connect(srv.wsUrl(stream, "after_seq=0&envelope=json"));
    await sub.received(10_000, 120_000);
    await publish(srv.wsUrl(stream), "c", 10_000, 10);
    await sub.received(10_010, 30_000);
    await Bun.sleep(200);
    expectRun(envelopes(sub), 1, 10_010, (s) => `c-${s - 1}`);
    sub.close();
  });
});

describe("since and last", () => {
  it("since (ISO 8601 or µs) starts after a time, last=N with the last N messages, from memory or the log", async () => {
    const srv = await server();
    const stream = "times";
    await publish(srv.wsUrl(stream), "t", 0, 300);
    await delivered(srv, stream, 300);
    const boundary = (await (await fetch(`${srv.url}/api/streams/${stream}/messages?limit=1`)).json()).messages[0].ts as number;
    await Bun.sleep(5);
    await publish(srv.wsUrl(stream), "t", 300, 300);
    await delivered(srv, stream, 600);
    for (const since of [String(boundary), new Date(Math.floor(boundary / 1000) + 1).toISOString()]) {
      const sub = await connect(srv.wsUrl(stream, `since=${encodeURIComponent(since)}&envelope=json`));
      await sub.received(300, 60_000);
      await Bun.sleep(100);
      expectRun(envelopes(sub), 301, 600, (s) => `t-${s - 1}`);
      sub.close();
    }
    // last=10 comes from memory (it keeps 100), last=450 from the log; each then goes on live.
    for (const last of [10, 450]) {
      const end = srv.hub.lastDeliveredSeq(stream);
      const sub = await connect(srv.wsUrl(stream, `last=${last}&envelope=json`));
      await sub.received(last, 60_000);
      await publish(srv.wsUrl(stream), "x", end, 1);
      await sub.received(last + 1, 30_000);
      await Bun.sleep(100);
      expectRun(envelopes(sub), end - last + 1, end + 1, (s) => (s <= 600 ? `t-${s - 1}` : `x-${s - 1}`));
      sub.close();
    }
  });
});

describe("bad replay requests", () => {
  it("refuses malformed values with a 400 before the upgrade, saying what is allowed", async () => {
    const srv = await server();
    const cases: [string, string][] = [
      ["after_seq=-1", "after_seq: \"-1\" is not valid; allowed: a whole number"],
      ["after_seq=1.5", "after_seq: \"1.5\" is not valid"],
      ["after_seq=", "after_seq: \"\" is not valid"],
      ["last=0", "last: \"0\" is not valid; allowed: a whole number from 1"],
      ["since=yesterday", "since: \"yesterday\" is not a time; allowed: an ISO 8601 time"],
      ["after_seq=1&since=2026-01-01T00:00:00Z", "after_seq and since cannot be combined"],
      ["after_seq=1&after_seq=2", "after_seq is given more than once"],
      ["envelope=xml", "envelope: \"xml\" is not valid; allowed: json"],
    ];
    for (const [query, message] of cases) {
      const res = await fetch(`${srv.url}/ws/rig?${query}`, { headers: { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13" } });
      expect(res.status).toBe(400);
      expect((await res.json()).error.message).toContain(message);
      const sse = await fetch(`${srv.url}/api/streams/rig/events?${query}`);
      expect(sse.status).toBe(400);
      expect((await sse.json()).error.message).toContain(message);
    }
    const res = await fetch(`${srv.url}/ws/$streams?after_seq=1`, { headers: { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13" } });
    expect(res.status).toBe(400);
    expect((await res.json()).error.message).toContain("$streams has no history");
  });

  it("closes with 1008 when after_seq is ahead of the stream, naming its last seq", async () => {
    const srv = await server();
    await publish(srv.wsUrl("ahead"), "a", 0, 5);
    await delivered(srv, "ahead", 5);
    const sub = await connect(srv.wsUrl("ahead", "after_seq=99"));
    expect(await sub.closed).toEqual({ code: 1008, reason: expect.stringContaining("after_seq 99 is ahead of stream \"ahead\", whose last seq is 5") });
  });

  it("says where history starts when after_seq is before it: a gap notice with envelope=json, close 4410 with raw frames", async () => {
    const srv = await server({ log_exclude: ["memonly*"], recent_messages_per_stream: 20 });
    await publish(srv.wsUrl("memonly"), "e", 0, 50);
    await delivered(srv, "memonly", 50);
    const json = await connect(srv.wsUrl("memonly", "after_seq=10&envelope=json"));
    await json.received(21, 30_000);
    expect(JSON.parse(String(json.messages[0]))).toEqual({ event: "gap", from: 11, to: 30, before_history: true, reason: expect.stringContaining("excluded from the log") });
    expectRun(envelopes(json), 31, 50, (s) => `e-${s - 1}`);
    json.close();
    const raw = await connect(srv.wsUrl("memonly", "after_seq=10"));
    expect(await raw.closed).toEqual({ code: 4410, reason: "history starts at seq 31: seq 11..30 are gone; reconnect with after_seq=30 to accept the gap" });
    expect(raw.messages).toEqual([]);
    // last=N and since are not resume points: they start where history starts, without a notice.
    const last = await connect(srv.wsUrl("memonly", "last=40&envelope=json"));
    await last.received(20, 30_000);
    expectRun(envelopes(last), 31, 50, (s) => `e-${s - 1}`);
    expect(last.messages.length).toBe(20);
    last.close();
  });
});

describe("access", () => {
  it("under access mode 'token' a replay needs the same read grant as the stream's other read routes", async () => {
    const srv = await server({ access: "token" });
    const writer = await signStreamToken(srv.secret, { topic: "secure", scopes: ["write"], ttlSeconds: 600 });
    const reader = await signStreamToken(srv.secret, { topic: "secure", scopes: ["read"], ttlSeconds: 600 });
    const other = await signStreamToken(srv.secret, { topic: "other", scopes: ["read"], ttlSeconds: 600 });
    await publish(srv.wsUrl("secure", `token=${writer}`), "s", 0, 10);
    await delivered(srv, "secure", 10);

    const anonymous = await connect(srv.wsUrl("secure", "after_seq=0&envelope=json"));
    expect((await anonymous.closed).code).toBe(1008);
    expect(anonymous.messages).toEqual([]);
    const wrongTopic = await connect(srv.wsUrl("secure", `after_seq=0&token=${other}`));
    expect((await wrongTopic.closed).code).toBe(1008);
    expect(wrongTopic.messages).toEqual([]);
    const writeOnly = await connect(srv.wsUrl("secure", `after_seq=0&token=${writer}`));
    expect(await writeOnly.closed).toEqual({ code: 1008, reason: expect.stringContaining("need the 'read' scope") });
    expect(writeOnly.messages).toEqual([]);

    expect((await fetch(`${srv.url}/api/streams/secure/events?after_seq=0`)).status).toBe(401);
    expect((await fetch(`${srv.url}/api/streams/secure/events?after_seq=0`, { headers: { Authorization: `Bearer ${other}` } })).status).toBe(403);
    expect((await fetch(`${srv.url}/api/streams/secure/messages?after_seq=0`)).status).toBe(401);

    const allowed = await connect(srv.wsUrl("secure", `after_seq=0&envelope=json&token=${reader}`));
    await allowed.received(10);
    expectRun(envelopes(allowed), 1, 10, (s) => `s-${s - 1}`);
    allowed.close();
  });
});
