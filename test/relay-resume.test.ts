import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { SettingsStore } from "../app/config/store.ts";
import { TOKEN_SECRET_NAME } from "../app/server.ts";
import { RELAY_PROTOCOL } from "../app/relay/relay-link.ts";
import { MAIN } from "./support/cli.ts";
import { connect, type TestClient } from "./support/client.ts";
import { startFakeSlack } from "./support/fake-slack.ts";
import { asAdmin, signIn } from "./support/admin.ts";
import { adminHeadersFor, freeTcpPort, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

// Real servers in subprocesses, restarted and killed: generous per-test time on a busy machine.
setDefaultTimeout(240_000);

/** A `switchyard serve` subprocess on 127.0.0.1:`port` (0: any), once it listens. */
async function serve(dataDir: string, port = 0) {
  const p = Bun.spawn([process.execPath, MAIN, "serve", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", String(port), "--udp-port", "0"], { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  let log = "";
  void (async () => { for await (const c of p.stderr) log += new TextDecoder().decode(c); })();
  try {
    await waitFor(() => /http=http:\/\/127\.0\.0\.1:\d+/.test(log) || p.exitCode !== null, "the server to listen", 30_000);
  } catch (err) {
    p.kill("SIGKILL");
    throw new Error(`${(err as Error).message}; its log:\n${log.slice(-2000)}`);
  }
  if (p.exitCode !== null) throw new Error(`serve exited with ${p.exitCode}; its log:\n${log.slice(-2000)}`);
  const listening = Number(/http=http:\/\/127\.0\.0\.1:(\d+)/.exec(log)![1]);
  return { p, port: listening, url: `http://127.0.0.1:${listening}`, log: () => log };
}
type Served = Awaited<ReturnType<typeof serve>>;

const running: Served[] = [];
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) {
    s.p.kill("SIGKILL");
    await s.p.exited;
  }
  for (const c of cleanups.splice(0)) c();
});

async function started(dataDir: string, port = 0): Promise<Served> {
  const s = await serve(dataDir, port);
  running.push(s);
  return s;
}

async function stop(s: Served, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
  s.p.kill(signal);
  await s.p.exited;
  running.splice(running.indexOf(s), 1);
}

function dir(): string {
  const t = tempDir("switchyard-resume-");
  cleanups.push(() => t.remove());
  return t.dir;
}

/** A relay token for `topic` on the Switchyard of `dataDir` (signed with its secret), audience its URL. */
function relayToken(dataDir: string, port: number, topic: string): Promise<string> {
  const store = SettingsStore.open(dataDir);
  try {
    return signStreamToken(store.secret(TOKEN_SECRET_NAME, () => "unused"), { topic, scopes: ["read", "write"], ttlSeconds: 3600, audience: `http://127.0.0.1:${port}` });
  } finally {
    store.close();
  }
}

async function postRule(url: string, rule: Record<string, unknown>): Promise<Response> {
  return fetch(`${url}/api/destinations`, { method: "POST", body: JSON.stringify(rule), headers: { "Content-Type": "application/json" } });
}

async function status(url: string, id: string) {
  return (await (await fetch(`${url}/api/destinations/${id}`)).json()).status;
}

/** Publishes "from".."to" (the numbers as text) on `stream` in NDJSON batches, each answered after fsync. */
async function publishRange(url: string, stream: string, from: number, to: number): Promise<void> {
  for (let lo = from; lo <= to; lo += 1000) {
    const hi = Math.min(to, lo + 999);
    const body = Array.from({ length: hi - lo + 1 }, (_, i) => String(lo + i)).join("\n");
    const r = await fetch(`${url}/api/streams/${stream}/messages`, { method: "POST", body, headers: { "Content-Type": "application/x-ndjson" } });
    expect(r.status).toBe(200);
  }
}

/** The payloads a `?after_seq=0&envelope=json` subscriber got, as numbers. */
function numbers(c: TestClient): number[] {
  return c.messages.map((m) => Number(JSON.parse(m as string).data));
}

/** Exactly 1..n, in order: nothing missing, nothing twice. */
function expectExactly(got: number[], n: number): void {
  const firstWrong = got.findIndex((v, i) => v !== i + 1);
  expect({ count: got.length, firstWrong, at: firstWrong >= 0 ? got.slice(Math.max(0, firstWrong - 2), firstWrong + 3) : [] }).toEqual({ count: n, firstWrong: -1, at: [] });
}

describe("relay store and forward between two Switchyards", () => {
  it("keeps what was published while the relay was stopped and sends it all, in order, once, then live", async () => {
    const bDir = dir();
    const bPort = freeTcpPort();
    let b = await started(bDir, bPort);
    const a = await started(dir());
    const token = await relayToken(bDir, bPort, "spin30-log");
    const posted = await postRule(a.url, { id: "0", stream: "spin30", destination: `${b.url}/session/spin30-log`, token, resume: true });
    expect(posted.status).toBe(200);
    await waitFor(async () => (await status(a.url, "0")).resume.mode === "switchyard", "the link to speak store and forward", 30_000);

    await publishRange(a.url, "spin30", 1, 100);
    await waitFor(async () => (await status(a.url, "0")).resume.cursor === 100, "the first 100 acknowledged", 30_000);

    await stop(b);
    await waitFor(async () => (await status(a.url, "0")).up === false, "the destination to see the relay gone", 30_000);
    await publishRange(a.url, "spin30", 101, 5100);
    // Status and alert numbers: 5,000 waiting, with an age; nothing dropped, nothing held in memory for it.
    const down = await status(a.url, "0");
    expect(down.resume.backlog_messages).toBe(5000);
    expect(down.dropped).toBe(0);
    await waitFor(async () => (await status(a.url, "0")).resume.backlog_age_seconds !== null, "the backlog's age", 30_000);
    await Bun.sleep(1500); // "a while": the destination keeps trying meanwhile

    b = await started(bDir, bPort);
    await waitFor(async () => (await status(a.url, "0")).resume.backlog_messages === 0, "the backlog to drain", 120_000);
    const sub = await connect(`ws://127.0.0.1:${bPort}/ws/spin30-log?after_seq=0&envelope=json`);
    await sub.received(5100, 60_000);
    await publishRange(a.url, "spin30", 5101, 5110);
    await sub.received(5110, 60_000);
    await Bun.sleep(500);
    expectExactly(numbers(sub), 5110);
    const after = await status(a.url, "0");
    expect(after.resume).toMatchObject({ mode: "switchyard", cursor: 5110, backlog_messages: 0, skipped: 0 });
    expect(after.dropped).toBe(0);
  });

  it("sends nothing twice and skips nothing when the sender is killed with SIGKILL mid-backlog", async () => {
    const bDir = dir();
    const bPort = freeTcpPort();
    let b = await started(bDir, bPort);
    const aDir = dir();
    let a = await started(aDir);
    // A slow catch-up, so that the kill lands in the middle of it.
    const limit = await fetch(`${a.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ relay_catchup_messages_per_second: 500 }), headers: { "Content-Type": "application/json", ...(await adminHeadersFor(aDir)) } });
    expect(limit.status).toBe(200);
    expect((await postRule(a.url, { id: "up", stream: "spin31", destination: `ws://127.0.0.1:${bPort}/ws/spin31-copy`, token: "", resume: true })).status).toBe(200);
    await waitFor(async () => (await status(a.url, "up")).resume.mode === "switchyard", "the link", 30_000);
    await stop(b);
    await waitFor(async () => (await status(a.url, "up")).up === false, "the relay gone", 30_000);
    await publishRange(a.url, "spin31", 1, 5000);
    b = await started(bDir, bPort);
    const sub = await connect(`ws://127.0.0.1:${bPort}/ws/spin31-copy?after_seq=0&envelope=json`);
    await waitFor(() => sub.messages.length >= 1000, "a part of the backlog on the relay", 60_000);
    expect(sub.messages.length).toBeLessThan(5000);
    await stop(a, "SIGKILL");
    a = await started(aDir);
    await sub.received(5000, 120_000);
    await publishRange(a.url, "spin31", 5001, 5010);
    await sub.received(5010, 60_000);
    await Bun.sleep(1000);
    expectExactly(numbers(sub), 5010);
    expect((await status(a.url, "up")).resume).toMatchObject({ cursor: 5010, backlog_messages: 0 });
  });

  it("holds across a restart of the relay killed with SIGKILL: the relay's own log says what it has", async () => {
    const bDir = dir();
    const bPort = freeTcpPort();
    let b = await started(bDir, bPort);
    const a = await started(dir());
    expect((await postRule(a.url, { id: "k", stream: "spin32", destination: `ws://127.0.0.1:${bPort}/ws/spin32`, token: "", resume: true })).status).toBe(200);
    await waitFor(async () => (await status(a.url, "k")).resume.mode === "switchyard", "the link", 30_000);
    await publishRange(a.url, "spin32", 1, 3000);
    await waitFor(async () => (await status(a.url, "k")).resume.cursor >= 1000, "some acknowledged", 60_000);
    await stop(b, "SIGKILL");
    await publishRange(a.url, "spin32", 3001, 5000);
    b = await started(bDir, bPort);
    await waitFor(async () => (await status(a.url, "k")).resume.backlog_messages === 0, "the backlog to drain", 120_000);
    const sub = await connect(`ws://127.0.0.1:${bPort}/ws/spin32?after_seq=0&envelope=json`);
    await sub.received(5000, 60_000);
    await Bun.sleep(500);
    expectExactly(numbers(sub), 5000);
    // Each stored message carries its sender and seq in its origin: what the relay answers after a restart comes from there.
    const sql = "SELECT count(*)::INTEGER AS n, count(DISTINCT origin)::INTEGER AS o, min(origin) AS first FROM messages WHERE stream = 'spin32'";
    const answer = await fetch(`${b.url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format: "ndjson" }), headers: { "Content-Type": "application/json", ...(await adminHeadersFor(bDir)) } });
    const row = JSON.parse((await answer.text()).trim().split("\n")[0]!);
    expect(row).toMatchObject({ n: 5000, o: 5000 });
    expect(row.first).toMatch(/^resume:[0-9a-f-]+:spin32#\d+$/);
  });
});

describe("relay store and forward towards a relay that cannot say what it has", () => {
  it("sends the backlog at least once from the last point the relay confirmed (a pong), in order, at the catch-up rate", async () => {
    // A relay that is not a Switchyard (as practable's): it answers no subprotocol and keeps what it gets.
    const got: string[] = [];
    const port = freeTcpPort();
    const start = () => Bun.serve({ port, hostname: "127.0.0.1", fetch: (req, srv) => (srv.upgrade(req) ? undefined : new Response("no")), websocket: { message: (_ws, m) => void got.push(String(m)) } });
    let relay = start();
    const a: TestServer = await startTestServer({ relay_catchup_messages_per_second: 250 }, { backoff: { baseMs: 100, maxMs: 400 } });
    cleanups.push(() => void a.close());
    expect((await postRule(a.url, { id: "p", stream: "plain", destination: `ws://127.0.0.1:${port}/x`, token: "", resume: true })).status).toBe(200);
    await waitFor(async () => (await status(a.url, "p")).resume.mode === "at-least-once", "the link (at least once)", 30_000);
    await publishRange(a.url, "plain", 1, 10);
    await waitFor(() => got.length === 10, "the first ten");
    // The relay's pong to a confirming ping (about a second later) says it read them.
    await waitFor(async () => (await status(a.url, "p")).resume.cursor === 10, "the first ten confirmed", 30_000);
    relay.stop(true);
    await waitFor(async () => (await status(a.url, "p")).state !== "connected", "the relay gone", 30_000);
    await publishRange(a.url, "plain", 11, 1010);
    expect((await status(a.url, "p")).resume.backlog_messages).toBe(1000);
    relay = start();
    cleanups.push(() => relay.stop(true));
    const began = performance.now();
    await waitFor(() => got.length >= 1010, "the backlog", 60_000);
    // 1,000 backlog messages at 250 a second (with a quarter-second burst) cannot take less than about 3.7 s.
    expect(performance.now() - began).toBeGreaterThan(3500);
    await publishRange(a.url, "plain", 1011, 1012);
    await waitFor(() => got.includes("1012"), "live again");
    const values = got.map(Number);
    // Every number there, in order: one link break can start one resend of what was not yet confirmed, no more.
    const restarts = values.filter((v, i) => i > 0 && v <= values[i - 1]!).length;
    expect(restarts).toBeLessThanOrEqual(1);
    const missing = Array.from({ length: 1012 }, (_, i) => i + 1).filter((n) => !values.includes(n));
    expect(missing).toEqual([]);
    // The remote's pongs to the confirming pings moved the cursor to the end.
    await waitFor(async () => (await status(a.url, "p")).resume.cursor === 1012, "the cursor confirmed by a pong");
  });
});

describe("relay store and forward: the cursor across a restart of the sender", () => {
  it("towards a relay that cannot say, resumes from the stored cursor after the sender restarts", async () => {
    const got: string[] = [];
    const port = freeTcpPort();
    const start = () => Bun.serve({ port, hostname: "127.0.0.1", fetch: (req, srv) => (srv.upgrade(req) ? undefined : new Response("no")), websocket: { message: (_ws, m) => void got.push(String(m)) } });
    let relay = start();
    const aDir = dir();
    const fast = { backoff: { baseMs: 100, maxMs: 400 }, dataDir: aDir };
    let a: TestServer = await startTestServer({}, fast);
    expect((await postRule(a.url, { id: "p", stream: "plain", destination: `ws://127.0.0.1:${port}/x`, token: "", resume: true })).status).toBe(200);
    await waitFor(async () => (await status(a.url, "p")).resume.mode === "at-least-once", "the link", 30_000);
    await publishRange(a.url, "plain", 1, 20);
    await waitFor(async () => (await status(a.url, "p")).resume.cursor === 20, "the first twenty confirmed", 30_000);
    relay.stop(true);
    await waitFor(async () => (await status(a.url, "p")).state !== "connected", "the relay gone", 30_000);
    await publishRange(a.url, "plain", 21, 520);
    // The sender restarts (same data dir) while the relay is away: the cursor and the log come back with it.
    await a.stop();
    a.store.close();
    a = await startTestServer({}, fast);
    cleanups.push(() => void a.close());
    expect((await status(a.url, "p")).resume).toMatchObject({ cursor: 20, backlog_messages: 500 });
    relay = start();
    cleanups.push(() => relay.stop(true));
    await waitFor(() => got.includes("520"), "the backlog", 60_000);
    await waitFor(async () => (await status(a.url, "p")).resume.cursor === 520, "all confirmed", 30_000);
    expect(got.map(Number)).toEqual(Array.from({ length: 520 }, (_, i) => i + 1));
  });
});

describe("relay store and forward: the receiving side refuses what it should", () => {
  it("does not let another publisher speak for a sender: it is known by its key, which only its hash in origins reveals", async () => {
    const b = await startTestServer();
    cleanups.push(() => void b.close());
    const a = await startTestServer({}, { backoff: { baseMs: 100, maxMs: 400 } });
    cleanups.push(() => void a.close());
    expect((await postRule(a.url, { id: "x", stream: "s", destination: b.wsUrl("s"), token: "", resume: true })).status).toBe(200);
    await waitFor(async () => (await status(a.url, "x")).resume.mode === "switchyard", "the link", 30_000);
    await publishRange(a.url, "s", 1, 3);
    await waitFor(async () => (await status(a.url, "x")).resume.cursor === 3, "the first three acknowledged", 30_000);
    // What anyone reading the relay's stream sees of the sender: its node id in the origins.
    const origin = (b.recent.after("s", 0, 1) ?? [])[0]!.origin;
    const nodeId = /^resume:([0-9a-f]{32}):s#1$/.exec(origin)![1]!;
    // An attacker with write access opens a relay link and tries to claim seqs far ahead, as that node id and as its own key.
    for (const key of [nodeId, "f".repeat(64)]) {
      const evil = new WebSocket(b.wsUrl("s"), { protocols: [RELAY_PROTOCOL] } as unknown as string[]);
      const frames: string[] = [];
      evil.onmessage = (e) => frames.push(String(e.data));
      await new Promise((resolve) => (evil.onopen = resolve));
      expect(evil.protocol).toBe(RELAY_PROTOCOL);
      evil.send(JSON.stringify({ relay: { key, stream: "s" } }));
      await waitFor(() => frames.length === 1, "the answer");
      expect(JSON.parse(frames[0]!)).toEqual({ relay: { after: 0 } }); // a new sender: the key's hash is not the node id
      evil.send(JSON.stringify({ id: "999999999", data: "forged" }));
      await waitFor(() => frames.length === 2, "the acknowledgement");
      evil.close();
    }
    await publishRange(a.url, "s", 4, 6);
    await waitFor(async () => (await status(a.url, "x")).resume.cursor === 6, "the sender's next three acknowledged", 30_000);
    const sub = await connect(b.wsUrl("s", "after_seq=0&envelope=json"));
    await sub.received(8);
    expect(sub.messages.map((m) => JSON.parse(m as string).data).filter((d: string) => d !== "forged")).toEqual(["1", "2", "3", "4", "5", "6"]);
  });

  it("closes a relay link that does not follow the protocol, saying what it expects", async () => {
    const b = await startTestServer();
    cleanups.push(() => void b.close());
    const cases: [string[], string][] = [
      [["not json"], 'the first frame of a relay link is {"relay":{"key"'],
      [[JSON.stringify({ relay: { key: "short", stream: "s" } })], 'the first frame of a relay link is {"relay":{"key"'],
      [[JSON.stringify({ relay: { key: "k".repeat(40), stream: "s" } }), JSON.stringify({ id: "0", data: "x" })], 'relay link messages are {"id":"<seq>"'],
    ];
    for (const [send, reason] of cases) {
      const ws = new WebSocket(b.wsUrl("s"), { protocols: [RELAY_PROTOCOL] } as unknown as string[]);
      const closed = new Promise<CloseEvent>((resolve) => (ws.onclose = resolve));
      let answered = false;
      ws.onmessage = () => {
        answered = true;
        for (const f of send.slice(1)) ws.send(f);
      };
      await new Promise((resolve) => (ws.onopen = resolve));
      ws.send(send[0]!);
      const e = await closed;
      expect(e.code).toBe(1008);
      expect(e.reason).toContain(reason);
      expect(answered).toBe(send.length > 1);
    }
    expect(b.hub.stream("s")?.messagesIn ?? 0).toBe(0);
  });
});

describe("relay rules without resume, and bad values", () => {
  it("leaves a rule without resume as it was: no cursor, no backlog, messages while down dropped", async () => {
    const relay = await startTestServer();
    cleanups.push(() => void relay.close());
    const a = await startTestServer({}, { backoff: { baseMs: 100, maxMs: 400 } });
    cleanups.push(() => void a.close());
    const r = await postRule(a.url, { id: "0", stream: "s", destination: relay.wsUrl("s"), token: "" });
    const body = await r.json();
    expect(body.resume).toBe(false);
    expect(body.status.resume).toBeUndefined();
    const watcher = await connect(relay.wsUrl("s"));
    await waitFor(async () => relay.hub.stream("s")?.connections.size === 2, "the connection");
    const pub = await connect(a.wsUrl("s"));
    pub.ws.send("hello");
    expect(await watcher.received(1)).toEqual(["hello"]);
    // The remote saw a plain publisher (no relay link): its origin is the connection, as before.
    const origins: string[] = [];
    relay.hub.onMessage((m) => origins.push(m.origin));
    pub.ws.send("again");
    await watcher.received(2);
    expect(origins[0]).toMatch(/^ws:/);
    expect(a.store.db.query("SELECT count(*) AS n FROM destination_cursors").get()).toEqual({ n: 0 });
  });

  it("answers bad resume values with a 400 that says what is allowed", async () => {
    const a = await startTestServer();
    cleanups.push(() => void a.close());
    const cases: [unknown, string, string][] = [
      ["yes", "websocket", 'resume: "yes" is not valid; allowed: true'],
      [1, "websocket", "resume: 1 is not valid; allowed: true"],
      [true, "webhook", "resume: applies to websocket destinations only"],
    ];
    for (const [resume, kind, message] of cases) {
      const destination = kind === "webhook" ? "http://127.0.0.1:9/hook" : "ws://127.0.0.1:9/ws/x";
      const r = await postRule(a.url, { id: "bad", stream: "s", destination, token: "", kind, resume });
      expect(r.status).toBe(400);
      const body = await r.json();
      expect(body.error.message).toContain(message);
      expect(body.error.data.fields.resume).toBeDefined();
    }
    expect(a.destinations.list()).toHaveLength(0);
  });
});

describe("relay store and forward: what the operator sees", () => {
  it("shows the backlog in the status, on the Destinations page and in the destination-down alert", async () => {
    const slack = startFakeSlack();
    cleanups.push(() => slack.stop());
    const dead = freeTcpPort(); // nothing listens there: the link stays down
    const a = await startTestServer({ alert_destination_down_seconds: 1 }, { backoff: { baseMs: 100, maxMs: 400 }, slackWebhookUrl: slack.url("ok") });
    cleanups.push(() => void a.close());
    expect((await postRule(a.url, { id: "lab", stream: "spin33", destination: `ws://127.0.0.1:${dead}/ws/spin33`, token: "", resume: true })).status).toBe(200);
    await publishRange(a.url, "spin33", 1, 42);
    const s = await status(a.url, "lab");
    expect(s.resume).toMatchObject({ mode: null, cursor: 0, backlog_messages: 42, catching_up: false });
    expect(typeof s.resume.backlog_age_seconds).toBe("number");
    expect(Date.parse(s.resume.backlog_oldest)).toBeGreaterThan(Date.now() - 60_000);
    expect(await (await fetch(`${a.url}/metrics`)).text()).toContain('switchyard_destination_backlog_messages{id="lab",stream="spin33"} 42');
    const admin = asAdmin(a, await signIn(a));
    const page = await (await admin.get("/admin/destinations")).text();
    expect(page).toContain('data-backlog="42"');
    expect(page).toMatch(/waiting, oldest from \d+ s ago/);
    // The edit form shows the checkbox ticked, and saving it keeps store and forward (and the cursor).
    expect(await (await admin.get("/admin/destinations/edit?id=lab")).text()).toMatch(/name="resume" value="1" checked/);
    const saved = await admin.post("/admin/destinations", { id: "lab", stream: "spin33", destination: `ws://127.0.0.1:${dead}/ws/spin33`, token: "", file: "", kind: "websocket", batch: "1", resume: "1", editing: "1" });
    expect(saved.status).toBe(200);
    expect(a.destinations.get("lab")!.rule.resume).toBe(true);
    expect((await status(a.url, "lab")).resume.backlog_messages).toBe(42);
    await waitFor(() => slack.received.some((m) => m.text.includes("Destination lab disconnected")), "the destination-down alert", 30_000);
    const alert = slack.received.find((m) => m.text.includes("Destination lab disconnected"))!;
    expect(JSON.stringify(alert)).toMatch(/42 messages waiting in the log, the oldest from \d+ s ago: they are sent, in order, when it is back/);
  });
});
