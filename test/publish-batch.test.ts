import { afterEach, describe, expect, it } from "bun:test";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { BATCH_BODY_LIMIT, encodeFrames } from "../app/sources/http/publish-batch.ts";
import { connect } from "./support/client.ts";
import { sqlRows, startTestServer, waitFor, type TestServer } from "./support/server.ts";
import { smallDisk, tmpfsProblem, type SmallDisk } from "./support/tmpfs.ts";
import { SettingsStore } from "../app/config/store.ts";
import { join } from "node:path";

let server: TestServer | null = null;
let disk: SmallDisk | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
  disk?.unmount();
  disk = null;
});

const lines = (n: number, from = 1) => Array.from({ length: n }, (_, i) => JSON.stringify({ n: from + i, v: "x".repeat(20) })).join("\n") + "\n";

async function post(s: TestServer, stream: string, body: string | Uint8Array, type: string, headers: Record<string, string> = {}) {
  const r = await fetch(`${s.url}/api/streams/${stream}/messages`, { method: "POST", body, headers: { "Content-Type": type, ...headers } });
  return { status: r.status, body: (await r.json()) as Record<string, any> };
}

const query = (s: TestServer, sql: string) => sqlRows(s.url, sql, s.adminHeaders);

describe("POST /api/streams/{name}/messages with a batch", () => {
  it("stores 10,000 NDJSON lines, answers their seq range after fsync, and delivers them in order", async () => {
    server = await startTestServer();
    const sub = await connect(server.wsUrl("batch"));
    await waitFor(() => server!.hub.stream("batch")?.readers === 1, "the subscriber to join");
    const warm = await post(server, "batch", "before", "text/plain");
    expect(warm.status).toBe(200);
    const r = await post(server, "batch", lines(10_000), "application/x-ndjson");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ stream: "batch", count: 10_000, first_seq: 2, last_seq: 10_001, kind: "text" });
    const got = await sub.received(10_001, 30_000);
    expect(got[0]).toBe("before");
    for (let i = 1; i <= 10_000; i++) expect(JSON.parse(got[i] as string).n).toBe(i);
    const rows = await query(server, "SELECT count(*)::INTEGER AS n, min(seq)::INTEGER AS lo, max(seq)::INTEGER AS hi, count(DISTINCT data)::INTEGER AS d FROM messages WHERE stream = 'batch' AND seq >= 2");
    expect(rows[0]).toEqual({ n: 10_000, lo: 2, hi: 10_001, d: 10_000 });
    const last = await query(server, "SELECT data FROM messages WHERE stream = 'batch' AND seq = 10001");
    expect(JSON.parse(last[0]!.data as string).n).toBe(10_000);
    sub.close();
  }, 60_000);

  it("refuses the whole batch for a bad line at line 5,000: nothing stored, nothing delivered", async () => {
    server = await startTestServer();
    const sub = await connect(server.wsUrl("strict"));
    await waitFor(() => server!.hub.stream("strict")?.readers === 1, "the subscriber to join");
    const good = new TextEncoder().encode(lines(4_999));
    const bad = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d, 0x0a]);
    const rest = new TextEncoder().encode(lines(5_000, 5_001));
    const body = new Uint8Array([...good, ...bad, ...rest]);
    const r = await post(server, "strict", body, "application/x-ndjson");
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain("line 5000 is not valid UTF-8");
    expect(r.body.error.data).toEqual({ line: 5000 });

    const empty = await post(server, "strict", "a\n\nb\n", "application/x-ndjson");
    expect(empty.status).toBe(400);
    expect(empty.body.error.message).toContain("line 2 is empty");

    await server.store.update({ max_message_bytes: 1024 });
    const long = await post(server, "strict", `a\n${"y".repeat(2000)}\nb\n`, "application/x-ndjson");
    expect(long.status).toBe(413);
    expect(long.body.error.message).toContain("line 2 is 2000 bytes, larger than the limit of 1024 bytes");

    // A good batch after them gets seq 1: none of the refused ones took a seq, and the subscriber sees only it.
    const ok = await post(server, "strict", "only\n", "application/x-ndjson");
    expect(ok.body).toMatchObject({ count: 1, first_seq: 1, last_seq: 1 });
    await sub.received(1);
    const rows = await query(server, "SELECT count(*)::INTEGER AS n FROM messages WHERE stream = 'strict'");
    expect(rows[0]!.n).toBe(1);
    expect(sub.messages).toEqual(["only"]);
    sub.close();
  }, 60_000);

  it("publishes a framed batch as binary messages, byte for byte, and names a broken frame", async () => {
    server = await startTestServer();
    const sub = await connect(server.wsUrl("bin"));
    await waitFor(() => server!.hub.stream("bin")?.readers === 1, "the subscriber to join");
    const msgs = Array.from({ length: 300 }, (_, i) => new Uint8Array([i & 0xff, 0, 0xff, 0x0a, i >> 8]));
    const r = await post(server, "bin", encodeFrames(msgs), "application/x-switchyard-batch");
    expect(r.body).toMatchObject({ count: 300, first_seq: 1, last_seq: 300, kind: "binary" });
    const got = await sub.received(300);
    for (let i = 0; i < 300; i++) expect([...(got[i] as Uint8Array)]).toEqual([...msgs[i]!]);

    const cut = encodeFrames(msgs.slice(0, 3)).subarray(0, 20);
    const bad = await post(server, "bin", cut, "application/x-switchyard-batch");
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain("frame 3 at byte 18 is cut short");
    const rows = await query(server, "SELECT count(*)::INTEGER AS n FROM messages WHERE stream = 'bin'");
    expect(rows[0]!.n).toBe(300);
    sub.close();
  }, 60_000);

  it("refuses a batch over 16 MiB with 413 before reading it, and chunked as soon as it passes", async () => {
    server = await startTestServer();
    const declared = await fetch(`${server.url}/api/streams/big/messages`, { method: "POST", body: new Uint8Array(BATCH_BODY_LIMIT + 1).fill(0x61), headers: { "Content-Type": "application/x-ndjson" } });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as any).error.message).toContain(`larger than the limit of ${BATCH_BODY_LIMIT} bytes (a publish batch`);
    const chunk = new Uint8Array(1024 * 1024).fill(0x61);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (sent++ > 20) ctl.close();
        else ctl.enqueue(chunk);
      },
    });
    const chunked = await fetch(`${server.url}/api/streams/big/messages`, { method: "POST", body: stream, headers: { "Content-Type": "application/x-ndjson" } });
    expect(chunked.status).toBe(413);
    expect(server.hub.stream("big")).toBeUndefined();
  }, 60_000);

  it("bounds what all batches together may hold: past 64 MiB in flight a batch gets 503 with Retry-After", async () => {
    server = await startTestServer();
    // Four chunked batches that stall after their first line: each counts as 16 MiB until answered.
    const stalled = Array.from({ length: 4 }, () => {
      let ctl!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({ start(c) { ctl = c; c.enqueue(new TextEncoder().encode("held\n")); } });
      const answer = fetch(`${server!.url}/api/streams/held/messages`, { method: "POST", body, headers: { "Content-Type": "application/x-ndjson" } });
      return { ctl, answer };
    });
    let refused: Response | null = null;
    await waitFor(async () => {
      const r = await fetch(`${server!.url}/api/streams/other/messages`, { method: "POST", body: "x\n", headers: { "Content-Type": "application/x-ndjson" } });
      if (r.status === 503) refused = r;
      else await r.arrayBuffer();
      return r.status === 503;
    }, "a batch to be refused while four stalled ones hold 64 MiB", 30_000);
    expect(refused!.headers.get("retry-after")).toBe("2");
    expect(((await refused!.json()) as any).error.message).toContain("too many batches at once");
    // Single messages are not held back by batches.
    expect((await post(server, "other", "single", "text/plain")).status).toBe(200);
    for (const s of stalled) s.ctl.close();
    const answers = await Promise.all(stalled.map(async (s) => (await s.answer).json() as Promise<Record<string, unknown>>));
    expect(answers.map((a) => a.count)).toEqual([1, 1, 1, 1]);
    expect((await post(server, "other", "y\n", "application/x-ndjson")).status).toBe(200);
  }, 60_000);

  it("says stored: false for a stream in log_exclude (delivered, never stored), single or batch", async () => {
    server = await startTestServer({ log_exclude: ["scratch*"] });
    const batch = await post(server, "scratch1", "a\nb\n", "application/x-ndjson");
    expect(batch.body).toMatchObject({ count: 2, first_seq: 1, last_seq: 2, stored: false });
    const single = await post(server, "scratch1", "c", "text/plain");
    expect(single.body).toMatchObject({ seq: 3, stored: false });
    const logged = await post(server, "kept", "a\n", "application/x-ndjson");
    expect(logged.body.stored).toBeUndefined();
  });

  it("needs a write grant under access mode 'token', like a single publish", async () => {
    server = await startTestServer({ access: "token" });
    const none = await post(server, "locked", "a\nb\n", "application/x-ndjson");
    expect(none.status).toBe(401);
    const readOnly = await signStreamToken(server.secret, { topic: "locked", scopes: ["read"], ttlSeconds: 60 });
    const ro = await post(server, "locked", "a\nb\n", "application/x-ndjson", { Authorization: `Bearer ${readOnly}` });
    expect(ro.status).toBe(403);
    expect(server.hub.stream("locked")?.seq ?? 0).toBe(0);
    const writer = await signStreamToken(server.secret, { topic: "locked", scopes: ["write"], ttlSeconds: 60 });
    const ok = await post(server, "locked", "a\nb\n", "application/x-ndjson", { Authorization: `Bearer ${writer}` });
    expect(ok.body).toMatchObject({ count: 2, first_seq: 1, last_seq: 2 });
  });

  describe.skipIf(tmpfsProblem !== null)("on a disk too small for the write (real tmpfs)", () => {
    it("answers 503 'not stored' when the write of a large publish fails within the request, never 200", async () => {
      disk = smallDisk(4096)!;
      const dataDir = join(disk.dir, "data");
      const store = SettingsStore.open(dataDir);
      store.update({ max_message_bytes: 6 * 1024 * 1024 });
      store.close();
      server = await startTestServer({}, { dataDir });
      // Over 4 MiB: the spool writes it within the publish call, and the 4 MiB disk cannot hold it.
      const single = await post(server, "big", "x".repeat(5 * 1024 * 1024), "text/plain");
      expect(single.status).toBe(503);
      expect(single.body.error.message).toContain("is not stored");
      await waitFor(() => server!.spool.failure === null, "the log to write again", 15_000);
      // The admin UI's publish form waits the same way: an error, never "published as message #…".
      const { asAdmin, signIn } = await import("./support/admin.ts");
      const form = await asAdmin(server, await signIn(server)).post("/admin/streams/publish", { stream: "big", data: "z".repeat(5 * 1024 * 1024) });
      expect(form.status).toBe(422);
      const page = await form.text();
      expect(page).toContain("is not stored");
      expect(page).not.toContain("published as message");
      await waitFor(() => server!.spool.failure === null, "the log to write again", 15_000);
      const line = "y".repeat(900 * 1024);
      const batch = await post(server, "big", `${line}\n`.repeat(6), "application/x-ndjson");
      expect(batch.status).toBe(503);
      expect(batch.body.error.message).toMatch(/not stored|cut short/);
      await waitFor(() => server!.spool.failure === null, "the log to write again", 15_000);
      const ok = await post(server, "big", "small\n", "application/x-ndjson");
      expect(ok.status).toBe(200);
      const rows = await query(server, "SELECT count(*)::INTEGER AS n FROM messages WHERE stream = 'big'");
      expect(rows[0]!.n).toBe(1);
    }, 60_000);
  });
});
