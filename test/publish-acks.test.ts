import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { SettingsStore } from "../app/config/store.ts";
import { spawnServe } from "./support/cli.ts";
import { connect, type TestClient } from "./support/client.ts";
import { RawWebSocket } from "./support/raw-socket.ts";
import { adminHeadersFor, sqlRows, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";
import { smallDisk, tmpfsProblem, type SmallDisk } from "./support/tmpfs.ts";

// Real servers, real subprocesses killed with SIGKILL: generous limits for a loaded machine.
setDefaultTimeout(120_000);

let server: TestServer | null = null;
let disk: SmallDisk | null = null;
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
  await server?.close();
  server = null;
  disk?.unmount();
  disk = null;
});

interface Ack { seq: number; count: number; ids?: string[]; seqs?: number[]; duplicates?: string[]; stored?: boolean }

/** The parsed frames a publisher got, by kind. */
function frames(c: TestClient) {
  const parsed = c.messages.map((m) => JSON.parse(m as string) as { ack?: Ack; accepted?: Ack; error?: Record<string, unknown> });
  return {
    acks: parsed.filter((f) => f.ack).map((f) => f.ack!),
    accepted: parsed.filter((f) => f.accepted).map((f) => f.accepted!),
    errors: parsed.filter((f) => f.error).map((f) => f.error!),
    all: parsed,
  };
}
const ackedCount = (c: TestClient) => frames(c).acks.reduce((a, f) => a + f.count, 0);

const query = sqlRows;

describe("websocket publishers with ?ack", () => {
  it("?ack=1: acknowledgements cover every message, in order, each after the log has it; no stream messages on that socket", async () => {
    server = await startTestServer();
    const sub = await connect(server.wsUrl("acked"));
    const pub = await connect(server.wsUrl("acked", "ack=1"));
    await waitFor(() => server!.hub.stream("acked")?.connections.size === 2, "both to join");
    const other = await connect(server.wsUrl("acked"));
    other.ws.send("from another publisher");
    await sub.received(1);
    const n = 5_000;
    for (let i = 0; i < n; i++) pub.ws.send(`m${i}`);
    await waitFor(() => ackedCount(pub) === n, `acknowledgements for ${n} messages`, 30_000);
    const { acks, errors, all } = frames(pub);
    expect(errors).toEqual([]);
    expect(all.every((f) => f.ack)).toBe(true);
    for (let i = 1; i < acks.length; i++) expect(acks[i]!.seq).toBeGreaterThan(acks[i - 1]!.seq);
    expect(acks.at(-1)!.seq).toBe(n + 1);
    // The spool had fsynced everything acknowledged by the time each ack went out.
    expect(server.spool.stats.fsyncs).toBeGreaterThan(0);
    const rows = await query(server.url, "SELECT count(*)::INTEGER AS n FROM messages WHERE stream = 'acked' AND data LIKE 'm%'", server.adminHeaders);
    expect(rows[0]!.n).toBe(n);
    await sub.received(n + 1);
    expect(sub.messages.slice(1)).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    // The other publisher (no ?ack) gets the stream as before, and no acknowledgement frames.
    await other.received(n);
    expect(other.messages).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    for (const c of [sub, pub, other]) c.close();
  });

  it("sends each acknowledgement only after an fsync that began after its messages were sent", async () => {
    server = await startTestServer();
    const pub = await connect(server.wsUrl("synced", "ack=1"));
    const fsyncsAtAck: number[] = [];
    pub.ws.addEventListener("message", () => fsyncsAtAck.push(server!.spool.stats.fsyncs));
    let total = 0;
    for (let burst = 0; burst < 20; burst++) {
      const before = server.spool.stats.fsyncs;
      const acksBefore = fsyncsAtAck.length;
      for (let i = 0; i < 50; i++) pub.ws.send(`b${burst}-${i}`);
      total += 50;
      await waitFor(() => ackedCount(pub) === total, `acknowledgements for burst ${burst}`);
      // Every ack of this burst came after at least one fsync completed since the burst was sent.
      for (const f of fsyncsAtAck.slice(acksBefore)) expect(f).toBeGreaterThan(before);
    }
    pub.close();
  });

  it("every acknowledged message is in the log after SIGKILL and a restart", async () => {
    const tmp = tempDir();
    cleanups.push(() => tmp.remove());
    const first = await spawnServe(tmp.dir);
    cleanups.push(async () => { first.p.kill("SIGKILL"); await first.p.exited; });
    const pub = await connect(`ws://127.0.0.1:${first.port}/ws/crash?ack=1`);
    let sent = 0;
    // Keep publishing until well past the first acknowledgements, then kill the server mid-stream.
    const sender = (async () => {
      while (pub.ws.readyState === WebSocket.OPEN && sent < 200_000) {
        for (let i = 0; i < 500; i++) pub.ws.send(`c${sent++}`);
        await Bun.sleep(1);
      }
    })();
    await waitFor(() => ackedCount(pub) >= 5_000, "5,000 acknowledged messages", 60_000);
    first.p.kill("SIGKILL");
    await first.p.exited;
    await pub.closed;
    await sender;
    const acks = frames(pub).acks;
    const highest = acks.at(-1)!.seq;
    expect(ackedCount(pub)).toBe(highest);
    expect(sent).toBeGreaterThan(highest);

    const second = await spawnServe(tmp.dir);
    cleanups.push(async () => { second.p.kill("SIGKILL"); await second.p.exited; });
    const rows = await query(`http://127.0.0.1:${second.port}`, `SELECT count(*)::INTEGER AS n, count(DISTINCT data)::INTEGER AS d, min(seq)::INTEGER AS lo, max(seq)::INTEGER AS hi FROM messages WHERE stream = 'crash' AND seq <= ${highest}`, await adminHeadersFor(tmp.dir));
    expect(rows[0]).toEqual({ n: highest, d: highest, lo: 1, hi: highest });
    const last = await query(`http://127.0.0.1:${second.port}`, `SELECT data FROM messages WHERE stream = 'crash' AND seq = ${highest}`, await adminHeadersFor(tmp.dir));
    expect(last[0]!.data).toBe(`c${highest - 1}`);
  });

  it("?ack=id: acknowledges by client id, and a resend after reconnecting is not stored twice", async () => {
    server = await startTestServer();
    const pub = await connect(server.wsUrl("ids", "ack=id"));
    pub.ws.send(JSON.stringify({ id: "a", data: "first" }));
    pub.ws.send(JSON.stringify({ id: "b", base64: Buffer.from([0, 1, 2, 255]).toString("base64") }));
    await waitFor(() => ackedCount(pub) === 2, "two acknowledgements");
    const firstRound = frames(pub).acks.flatMap((a) => a.ids!.map((id, i) => [id, a.seqs![i]]));
    expect(firstRound).toEqual([["a", 1], ["b", 2]]);
    pub.close();
    await pub.closed;

    // Reconnected, it sends b again (it was not sure) and c.
    const again = await connect(server.wsUrl("ids", "ack=id"));
    again.ws.send(JSON.stringify({ id: "b", base64: Buffer.from([0, 1, 2, 255]).toString("base64") }));
    again.ws.send(JSON.stringify({ id: "c", data: "third" }));
    await waitFor(() => ackedCount(again) === 2, "two more acknowledgements");
    const acks = frames(again).acks;
    expect(acks.flatMap((a) => a.ids)).toEqual(["b", "c"]);
    expect(acks.flatMap((a) => a.seqs)).toEqual([2, 3]);
    expect(acks.flatMap((a) => a.duplicates ?? [])).toEqual(["b"]);
    const rows = await query(server.url, "SELECT seq::INTEGER AS seq, kind, data FROM messages WHERE stream = 'ids' ORDER BY seq", server.adminHeaders);
    expect(rows).toEqual([
      { seq: 1, kind: "text", data: "first" },
      { seq: 2, kind: "binary", data: Buffer.from([0, 1, 2, 255]).toString("base64") },
      { seq: 3, kind: "text", data: "third" },
    ]);

    // With the window off, a resend is stored again.
    await server.store.update({ publish_dedup_seconds: 0 });
    again.ws.send(JSON.stringify({ id: "c", data: "third" }));
    await waitFor(() => ackedCount(again) === 3, "the third acknowledgement");
    expect(frames(again).acks.at(-1)).toMatchObject({ ids: ["c"], seqs: [4] });
    again.close();
  });

  it("refuses an unknown ?ack value and a frame that is not an envelope under ?ack=id, saying what is allowed", async () => {
    server = await startTestServer();
    const bad = await connect(server.wsUrl("x", "ack=yes"));
    const closed = await bad.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain("use ack=1");
    const pub = await connect(server.wsUrl("x", "ack=id"));
    pub.ws.send("plain text");
    const c2 = await pub.closed;
    expect(c2.code).toBe(1008);
    expect(c2.reason).toContain(`{"id":"…","data":"text"}`);
    expect(server.hub.stream("x")?.seq ?? 0).toBe(0);
  });

  it("on a log_exclude stream, says 'accepted, not stored' instead of acknowledging", async () => {
    server = await startTestServer({ log_exclude: ["volatile*"] });
    const pub = await connect(server.wsUrl("volatile1", "ack=1"));
    pub.ws.send("a");
    pub.ws.send("b");
    await waitFor(() => frames(pub).accepted.reduce((a, f) => a + f.count, 0) === 2, "two accepted");
    expect(frames(pub).acks).toEqual([]);
    expect(frames(pub).accepted[0]).toMatchObject({ stored: false });
    pub.close();
  });

  it("closes a publisher that never reads its acknowledgements (1013) instead of buffering them without bound", async () => {
    server = await startTestServer({ backpressure_limit_bytes: 64 * 1024 });
    const raw = await RawWebSocket.open(server.port, "/ws/stall?ack=id");
    raw.stall();
    const conn = () => [...(server!.hub.stream("stall")?.connections ?? [])][0];
    await waitFor(() => conn() !== undefined, "the publisher to join");
    const id = "i".repeat(120);
    let sent = 0;
    // Each acknowledgement names 120-byte ids: far more than the kernel's socket buffers once enough are sent.
    while (!conn()?.closing && sent < 400_000 && !raw.socket.destroyed) {
      const batch: Buffer[] = [];
      for (let i = 0; i < 500; i++) batch.push(maskedText(JSON.stringify({ id: `${id}${sent++}`, data: "x" })));
      await new Promise<void>((r) => raw.socket.write(Buffer.concat(batch), () => r()));
    }
    await waitFor(() => server!.hub.stream("stall")?.connections.size === 0, "the stalled publisher to be closed");
    const seen = await raw.readUntilClose(30_000);
    expect(seen.code).toBe(1013);
    expect(seen.reason).toContain("acknowledgements not read");
    raw.destroy();
  });

  describe.skipIf(tmpfsProblem !== null)("the log on a full disk", () => {
    it("never acknowledges a message the log could not store; the publisher is told and closed with 1013, and a resend stores it", async () => {
      disk = smallDisk(4096)!;
      const dataDir = join(disk.dir, "data");
      SettingsStore.open(dataDir).close();
      server = await startTestServer({}, { dataDir });
      const pub = await connect(server.wsUrl("full", "ack=id"));
      pub.ws.send(JSON.stringify({ id: "before", data: "ok" }));
      await waitFor(() => ackedCount(pub) === 1, "the first acknowledgement");
      disk.fill();
      const big = "x".repeat(9000);
      for (let i = 0; i < 5; i++) pub.ws.send(JSON.stringify({ id: `lost${i}`, data: big }));
      const closed = await pub.closed;
      expect(closed.code).toBe(1013);
      expect(frames(pub).acks.flatMap((a) => a.ids)).toEqual(["before"]);
      for (const e of frames(pub).errors) expect(e.stored).toBe("no");

      disk.free();
      await waitFor(() => server!.spool.failure === null, "the log to write again", 15_000);
      const again = await connect(server.wsUrl("full", "ack=id"));
      for (let i = 0; i < 5; i++) again.ws.send(JSON.stringify({ id: `lost${i}`, data: big }));
      await waitFor(() => ackedCount(again) === 5, "the resent messages acknowledged");
      expect(frames(again).acks.flatMap((a) => a.duplicates ?? [])).toEqual([]);
      const rows = await query(server.url, "SELECT count(*)::INTEGER AS n FROM messages WHERE stream = 'full'", server.adminHeaders);
      expect(rows[0]!.n).toBe(6);
      again.close();
    });
  });
});

/** A masked client text frame. */
function maskedText(text: string): Buffer {
  const payload = Buffer.from(text);
  const head = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const mask = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([head, mask, body]);
}

describe("DedupWindow", () => {
  it("remembers an id per stream for the window, forgets it after, and keeps at most MAX_DEDUP_IDS", async () => {
    const { DedupWindow, MAX_DEDUP_IDS } = await import("../app/sources/publish-acks.ts");
    let now = 1_000_000;
    const w = new DedupWindow(() => now);
    w.remember("s", "a", 1, 10);
    expect(w.get("s", "a", 10)?.seq).toBe(1);
    expect(w.get("t", "a", 10)).toBeUndefined();
    now += 10_001;
    expect(w.get("s", "a", 10)).toBeUndefined();
    w.remember("s", "b", 2, 10);
    expect(w.size).toBe(1); // the expired one went when the next was remembered
    w.forget("s", "b", 3); // another seq: not this one's
    expect(w.get("s", "b", 10)?.seq).toBe(2);
    w.forget("s", "b", 2);
    expect(w.get("s", "b", 10)).toBeUndefined();
    for (let i = 0; i < MAX_DEDUP_IDS + 10; i++) w.remember("s", `id${i}`, i, 3600);
    expect(w.size).toBe(MAX_DEDUP_IDS);
    expect(w.get("s", "id0", 3600)).toBeUndefined();
    expect(w.get("s", `id${MAX_DEDUP_IDS + 9}`, 3600)?.seq).toBe(MAX_DEDUP_IDS + 9);
  });
});

/** The fenced code block of `lang` in docs/STREAMS.md's acknowledged-publishing section. */
async function docExample(lang: string): Promise<string> {
  const doc = await Bun.file(join(import.meta.dir, "..", "docs", "STREAMS.md")).text();
  const section = doc.slice(doc.indexOf("## Acknowledged publishing"));
  const m = new RegExp("```" + lang + "\\n([\\s\\S]*?)```").exec(section);
  if (!m) throw new Error(`no ${lang} example in docs/STREAMS.md`);
  return m[1]!;
}

const pythonProblem = Bun.spawnSync(["/usr/bin/python3", "-c", "import websocket"], { stderr: "pipe" }).exitCode === 0 ? null : "python3 with websocket-client is not installed";

describe("the documented examples", () => {
  it.skipIf(pythonProblem !== null)("Python (websocket-client): publishes with ids and returns once both are acknowledged", async () => {
    server = await startTestServer();
    const code = (await docExample("python")).replace("ws://localhost:8888", `ws://127.0.0.1:${server.port}`);
    const p = Bun.spawn(["/usr/bin/python3", "-c", code], { stdout: "pipe", stderr: "pipe" });
    expect(await p.exited).toBe(0);
    const rows = await query(server.url, "SELECT seq::INTEGER AS seq, data FROM messages WHERE stream = 'spin30' ORDER BY seq", server.adminHeaders);
    expect(rows).toEqual([{ seq: 1, data: "{\"v\":1}" }, { seq: 2, data: "{\"v\":2}" }]);
  });

  it("JavaScript: messages published before the socket opens are sent on open, and the acks empty the unacknowledged list", async () => {
    server = await startTestServer();
    const code = (await docExample("js")).replace("ws://localhost:8888", `ws://127.0.0.1:${server.port}`);
    const driver = `${code}
publish("a", "one"); publish("b", "two");
const until = Date.now() + 20000;
while (unacked.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
console.log(unacked.size);
process.exit(0);`;
    const p = Bun.spawn([process.execPath, "-e", driver], { stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect({ out: out.trim(), err }).toEqual({ out: "0", err: "" });
    const rows = await query(server.url, "SELECT data FROM messages WHERE stream = 'spin30' ORDER BY seq", server.adminHeaders);
    expect(rows.map((r) => r.data)).toEqual(["one", "two"]);
  });
});

describe("a resend while its first copy's commit is under way", () => {
  it("is acknowledged only if the first copy's commit succeeds; if it fails, the resend gets an error, never an ack", async () => {
    const { Hub } = await import("../app/hub/hub.ts");
    const { DEFAULT_SETTINGS } = await import("../app/config/settings.ts");
    const { systemClock } = await import("../app/core/clock.ts");
    const { createLogger } = await import("../app/core/logger.ts");
    const { newConnection } = await import("../app/hub/connection.ts");
    const { LogWriteError } = await import("../app/log/spool.ts");
    const { DedupWindow, publishAcked, requestAcks } = await import("../app/sources/publish-acks.ts");
    const settings = () => DEFAULT_SETTINGS;
    const hub = new Hub({ settings, clock: systemClock, logger: createLogger("error", () => {}) });
    let appended = 0;
    hub.onMessage(() => { appended++; });
    // A log whose group commits the test settles by hand.
    const commits: { resolve(): void; reject(e: Error): void }[] = [];
    const log = {
      appended: () => appended,
      logs: () => true,
      commitWaiter() {
        let resolve!: () => void, reject!: (e: Error) => void;
        const done = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
        done.catch(() => {});
        commits.push({ resolve, reject });
        return { cover() {}, done };
      },
    };
    const deps = { hub, settings, log, dedup: new DedupWindow() };
    const socket = () => {
      const conn = newConnection("s", "ws:test", { read: false, write: true, via: "token" });
      requestAcks(conn, "id");
      const ws = { data: conn, readyState: 1, frames: [] as string[], closedWith: null as number | null,
        send(t: string) { this.frames.push(t); return t.length; }, getBufferedAmount: () => 0,
        close(code: number) { this.closedWith = code; this.readyState = 3; } };
      return ws;
    };
    const a = socket();
    const b = socket();
    publishAcked(a as never, JSON.stringify({ id: "x", data: "first" }), deps);
    await new Promise((r) => setImmediate(r)); // the end of the turn: A's round is sealed, its commit under way
    publishAcked(b as never, JSON.stringify({ id: "x", data: "first" }), deps);
    await new Promise((r) => setImmediate(r));
    expect(appended).toBe(1); // the resend was not published again
    commits[1]!.resolve(); // B's own round commits...
    commits[0]!.reject(new LogWriteError("no", "the log could not write it (ENOSPC), so it is not stored")); // ...but A's copy failed
    await waitFor(() => a.closedWith !== null && b.closedWith !== null, "both publishers to be told");
    for (const ws of [a, b]) {
      const got = ws.frames.map((f) => JSON.parse(f));
      expect(got.some((f) => f.ack)).toBe(false);
      expect(got.find((f) => f.error)?.error).toMatchObject({ stored: "no", ids: ["x"], seqs: [1] });
      expect(ws.closedWith).toBe(1013);
    }
    // The id was forgotten: sending it again publishes it.
    const c = socket();
    publishAcked(c as never, JSON.stringify({ id: "x", data: "first" }), deps);
    expect(appended).toBe(2);
  });
});
