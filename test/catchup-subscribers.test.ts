import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { SettingsStore } from "../app/config/store.ts";
import { Spool } from "../app/log/spool.ts";
import type { Settings } from "../app/config/settings.ts";
import { spawnServe } from "./support/cli.ts";
import { connect, liveTraffic, type TestClient } from "./support/client.ts";
import { silentLogger } from "../app/core/logger.ts";
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

  it.each([["the recent ring on", 100], ["no recent ring: the hand-off goes through the kept live messages", 0]])("hands off from replay to live with no gap and no duplicate while publishing goes on (%s)", async (_name, ring) => {
    const srv = await server({ recent_messages_per_stream: ring });
    const stream = "busy";
    await publish(srv.wsUrl(stream), "b", 0, 5000);
    await delivered(srv, stream, 5000);
    // A paced publisher goes on from before the subscriber connects until well after its replay
    // has begun arriving, so the replay reaches the live edge while messages keep coming.
    const pub = await connect(srv.wsUrl(stream));
    let sub: TestClient | undefined;
    let i = 5000;
    let more = 4000;
    const publishing = (async () => {
      while (more > 0) {
        pub.ws.send(`b-${i++}`);
        if ((sub?.messages.length ?? 0) > 0) more--;
        if (i % 10 === 0) await Bun.sleep(2);
      }
    })();
    sub = await connect(srv.wsUrl(stream, "after_seq=10&envelope=json"));
    await publishing;
    await delivered(srv, stream, i);
    await sub.received(i - 10, 120_000);
    await Bun.sleep(200);
    expectRun(envelopes(sub), 11, i, (s) => `b-${s - 1}`);
    pub.close();
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
    // What the followers wrote counts as handed to subscribers, like the fan-out's messages.
    expect(srv.hub.stream(stream)!.messagesOut).toBe(5);
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

/** One server-sent event as an EventSource dispatches it. */
type SseEvent = { id: string; event: string; data: string };

/**
 * Reads server-sent events from `url` the way an EventSource does (fields id,
 * event, data; a blank line dispatches; the last id is kept and sent back as
 * Last-Event-ID), until `stop` says so; then drops the connection.
 */
async function readEvents(url: string, lastEventId: string | null, stop: (e: SseEvent, all: SseEvent[]) => boolean, all: SseEvent[]): Promise<string | null> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: lastEventId ? { "Last-Event-ID": lastEventId } : {}, signal: ac.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/event-stream");
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let id = lastEventId;
  let cur: SseEvent = { id: "", event: "message", data: "" };
  let dataLines: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return id;
      text += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = text.indexOf("\n")) >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        if (line === "") {
          if (dataLines.length > 0) {
            cur.data = dataLines.join("\n");
            cur.id = id ?? "";
            all.push(cur);
            if (stop(cur, all)) return id;
          }
          cur = { id: "", event: "message", data: "" };
          dataLines = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") id = value;
        else if (field === "event") cur.event = value;
        else if (field === "data") dataLines.push(value);
      }
    }
  } finally {
    ac.abort();
  }
}

describe("GET /api/streams/{name}/events", () => {
  it("follows a stream as server-sent events; a client that reconnects with Last-Event-ID loses nothing", async () => {
    const srv = await server();
    const stream = "sse/rig";
    await publish(srv.wsUrl(stream), "v", 0, 2000);
    await delivered(srv, stream, 2000);
    const url = `${srv.url}/api/streams/${encodeURIComponent(stream).replace(/%2F/g, "/")}/events?after_seq=0`;
    const all: SseEvent[] = [];
    // Drops the connection three times mid-stream, while messages keep coming.
    const publishing = publish(srv.wsUrl(stream), "v", 2000, 3000);
    let last: string | null = null;
    for (const upto of [500, 2500, 4000]) last = await readEvents(url, last, (_e, got) => got.length >= upto, all);
    await publishing;
    await delivered(srv, stream, 5000);
    last = await readEvents(url, last, (_e, got) => got.length >= 5000, all);
    expect(last).toBe("5000");
    expect(all.every((e) => e.event === "message" && e.id === String(JSON.parse(e.data).seq))).toBe(true);
    expectRun(all.map((e) => JSON.parse(e.data) as Envelope), 1, 5000, (s) => `v-${s - 1}`);
  });

  it("has the websocket's semantics: last, bytes as base64, the gap notice with the id to resume from", async () => {
    const srv = await server({ log_exclude: ["mem*"], recent_messages_per_stream: 10 });
    const pub = await connect(srv.wsUrl("mem"));
    for (let i = 0; i < 15; i++) pub.ws.send(i === 14 ? new Uint8Array([1, 2, 3]) : `m-${i}`);
    await delivered(srv, "mem", 15);
    pub.close();
    const all: SseEvent[] = [];
    await readEvents(`${srv.url}/api/streams/mem/events?after_seq=2`, null, (_e, got) => got.length >= 11, all);
    expect(all[0]).toEqual({ id: "5", event: "gap", data: expect.any(String) });
    expect(JSON.parse(all[0]!.data)).toMatchObject({ event: "gap", from: 3, to: 5, before_history: true });
    expect(all.slice(1).map((e) => Number(e.id))).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(JSON.parse(all[10]!.data)).toEqual({ seq: 15, ts: expect.any(Number), data: "AQID", binary: true });
    const lastTwo: SseEvent[] = [];
    await readEvents(`${srv.url}/api/streams/mem/events?last=2`, null, (_e, got) => got.length >= 2, lastTwo);
    expect(lastTwo.map((e) => e.id)).toEqual(["14", "15"]);
  });
});

describe("event streams count against max_connections", () => {
  it("shares the limit with websockets: one over it gets 503 with Retry-After, and a slot comes back when a stream ends", async () => {
    const srv = await server({ max_connections: 2 });
    const ws = await connect(srv.wsUrl("cap"));
    const first = new AbortController();
    const open = await fetch(`${srv.url}/api/streams/cap/events?last=1`, { signal: first.signal });
    expect(open.status).toBe(200);
    const refused = await fetch(`${srv.url}/api/streams/cap/events?last=1`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("2");
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain("max_connections");
    // A websocket over the limit is closed with 1013, the event stream holding the slot.
    const third = await connect(srv.wsUrl("cap"));
    expect((await third.closed).code).toBe(1013);
    first.abort();
    await waitFor(() => srv.hub.eventStreams === 0, "the aborted event stream to give its slot back", 10_000);
    const again = new AbortController();
    const next = await fetch(`${srv.url}/api/streams/cap/events?last=1`, { signal: again.signal });
    expect(next.status).toBe(200);
    again.abort();
    ws.close();
  });
});

/** The hub process's resident memory, bytes (VmRSS). */
function rss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/**
 * A websocket reader on a raw TCP socket that starts stalled (reads nothing);
 * `take()` lets it read for one moment. Collects the payloads of the frames.
 */
async function slowReader(port: number, path: string) {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => { socket.once("connect", resolve); socket.once("error", reject); });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let buf = Buffer.alloc(0);
  let upgraded = false;
  const payloads: string[] = [];
  socket.on("data", (d: Buffer) => {
    socket.pause();
    buf = Buffer.concat([buf, d]);
    if (!upgraded) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      if (!buf.subarray(0, 12).toString().startsWith("HTTP/1.1 101")) throw new Error(`upgrade refused: ${buf.toString().split("\r\n")[0]}`);
      buf = buf.subarray(end + 4);
      upgraded = true;
    }
    while (buf.length >= 2) {
      let len = buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; } else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf.length < off + len) return;
      payloads.push(buf.subarray(off, off + len).toString());
      buf = buf.subarray(off + len);
    }
  });
  return { payloads, take: () => socket.resume(), stop: () => socket.destroy() };
}

describe("a resuming subscriber that falls behind live", () => {
  it("is paused and catches up from memory or the log instead of losing messages", async () => {
    const srv = await server({ backpressure_limit_bytes: 64 * 1024 });
    const stream = "fast";
    await publish(srv.wsUrl(stream), "f", 0, 1);
    await delivered(srv, stream, 1);
    const reader = await slowReader(srv.port, `/ws/${stream}?after_seq=1&envelope=json`);
    const plain = await slowReader(srv.port, `/ws/${stream}`); // a plain subscriber, stalled too: dropped from by policy
    try {
      // 20,000 messages of ~1 kB while both read nothing: 20 MB, past the 64 KiB limit and what the kernel's socket buffers hold.
      const pad = "y".repeat(1000);
      const pub = await connect(srv.wsUrl(stream));
      for (let i = 1; i <= 20_000; i++) {
        pub.ws.send(`f-${i}-${pad}`);
        if (i % 500 === 0) await Bun.sleep(1);
      }
      await delivered(srv, stream, 20_001);
      pub.close();
      await waitFor(() => {
        reader.take();
        plain.take();
        return reader.payloads.length >= 20_000;
      }, "the resuming subscriber to catch up", 120_000);
      const got = reader.payloads.map((p) => JSON.parse(p) as Envelope);
      expectRun(got, 2, 20_001, (s) => `f-${s - 1}-${pad}`);
      expect(srv.hub.stream(stream)!.dropped).toBeGreaterThan(0); // the plain one lost messages meanwhile
    } finally {
      reader.stop();
      plain.stop();
    }
  });
});

describe("a replay larger than memory", () => {
  it("streams 1M logged messages to a slow reader with the hub's RSS bounded, while others go on", async () => {
    const tmp = tempDir();
    const TOTAL = 1_000_000;
    const pad = "x".repeat(60);
    try {
      const spoolDir = join(tmp.dir, "spool");
      const spool = Spool.open(spoolDir, { segmentBytes: 64 * 1024 * 1024, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
      const t0 = Date.now() * 1000 - TOTAL;
      for (let seq = 1; seq <= TOTAL; seq++) {
        const data = `big-${seq}-${pad}`;
        spool.append({ stream: "big", ts: t0 + seq, seq, origin: "ws:test:1", data, size: data.length });
        if (seq % 2000 === 0) spool.flush();
      }
      spool.flush();
      spool.close();

      // Compact it to Parquet first (as a day of history would be), then restart, so the
      // baseline is a server that has not just read a large spool in its recovery.
      const store = SettingsStore.open(tmp.dir);
      store.update({ log_compact_seconds: 1 });
      store.close();
      const compacting = await spawnServe(tmp.dir);
      await waitFor(() => Spool.segments(spoolDir).length <= 1 && readdirSync(join(tmp.dir, "logs"), { recursive: true }).some((f) => String(f).endsWith(".parquet")), "the spool to be compacted to Parquet", 240_000);
      compacting.p.kill("SIGTERM");
      await compacting.p.exited;
      const srv = await spawnServe(tmp.dir);
      try {
        await liveTraffic(`http://127.0.0.1:${srv.port}`, "warmup");
        // The baseline is a server whose query process is up and has read the log once (its first start costs the hub memory of its own).
        const warm = await fetch(`http://127.0.0.1:${srv.port}/api/streams/big/messages?after_seq=0&limit=100&source=log`);
        expect(warm.status).toBe(200);
        const before = rss(srv.p.pid);
        const reader = await slowReader(srv.port, "/ws/big?after_seq=0");
        let peak = before;
        const sample = setInterval(() => { peak = Math.max(peak, rss(srv.p.pid)); }, 100);
        try {
          // The reader takes one chunk at a time, a few times a second: far slower than the log can be read.
          const until = Date.now() + 10_000;
          while (Date.now() < until || reader.payloads.length === 0) {
            reader.take();
            await Bun.sleep(250);
            if (Date.now() > until + 120_000) throw new Error("the replay did not begin");
          }
          await liveTraffic(`http://127.0.0.1:${srv.port}`, "others"); // other clients are not held up
        } finally {
          clearInterval(sample);
          reader.stop();
        }
        const got = reader.payloads;
        expect(got.length).toBeLessThan(TOTAL / 2);
        expect(got.every((p, i) => p === `big-${i + 1}-${pad}`)).toBe(true);
        // A follower holds one log page (10,000 rows, at most 4 MiB of payload) and the socket's
        // backpressure limit. Measured: +41 to +73 MiB, the same whether the reader took 800 or 250,000
        // messages (the query pool's side and GC slack); holding the replay would add well over
        // 150 MB to that (1M strings of ~75 bytes plus their message objects).
        expect(peak - before).toBeLessThan(128 * 1024 * 1024);
      } finally {
        srv.p.kill("SIGKILL");
        await srv.p.exited;
      }
    } finally {
      tmp.remove();
    }
  });
});

describe("GET /api/streams/{name}/messages with after_seq", () => {
  it("pages forward from a resume point: the first `limit` after it, next_after_seq and more, until nothing is missed", async () => {
    const srv = await server();
    const stream = "paged";
    await publish(srv.wsUrl(stream), "p", 0, 10_000);
    await delivered(srv, stream, 10_000);
    const got: Envelope[] = [];
    let after = 37;
    const sources = new Set<string>();
    for (;;) {
      const page = await (await fetch(`${srv.url}/api/streams/${stream}/messages?after_seq=${after}&limit=990`)).json();
      sources.add(page.source);
      got.push(...page.messages);
      expect(page.next_after_seq).toBe(page.messages.at(-1)?.seq ?? after);
      after = page.next_after_seq;
      if (!page.more) break;
    }
    expectRun(got, 38, 10_000, (s) => `p-${s - 1}`);
    expect([...sources].sort()).toEqual(["log", "memory"]); // the last page (seq 9938 on) is still in memory (it keeps 100)
    // At the end: nothing, no more; then a new message is the next page.
    const end = await (await fetch(`${srv.url}/api/streams/${stream}/messages?after_seq=10000`)).json();
    expect(end).toMatchObject({ source: "memory", messages: [], next_after_seq: 10_000, more: false });
    const latest = await (await fetch(`${srv.url}/api/streams/${stream}/messages?last=3`)).json();
    expect(latest.messages.map((m: Envelope) => m.seq)).toEqual([9998, 9999, 10_000]);
    for (const [query, message] of [["after_seq=1&last=2", "after_seq and last cannot be combined"], ["last=2&limit=3", "limit and last cannot be combined"],
      ["after_seq=10001", "after_seq 10001 is ahead of stream \"paged\", whose last seq is 10000"], ["since=soon", "since: \"soon\" is not a time"]]) {
      const res = await fetch(`${srv.url}/api/streams/${stream}/messages?${query}`);
      expect(res.status).toBe(400);
      expect((await res.json()).error.message).toContain(message);
    }
  });

  it("names the gap when the resume point is before what is kept", async () => {
    const srv = await server({ log_exclude: ["gone*"], recent_messages_per_stream: 10 });
    await publish(srv.wsUrl("gone"), "g", 0, 30);
    await delivered(srv, "gone", 30);
    const page = await (await fetch(`${srv.url}/api/streams/gone/messages?after_seq=5&source=memory`)).json();
    expect(page).toMatchObject({ source: "memory", next_after_seq: 30, more: false, gap: { from: 6, to: 20 } });
    expect(page.messages.map((m: Envelope) => m.seq)).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
  });
});
