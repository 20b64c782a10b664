import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { startTestServer, type TestServer } from "./support/server.ts";

setDefaultTimeout(120_000);

// 40 messages of about 1 MB (the default max_message_bytes), all settings default: every way of reading
// them back from the log. Sorting whole payloads to cut a page ran the query process's DuckDB (128 MB)
// out of memory, or the process past query_rss_mb.
const N = 40;
const body = (i: number) => `${String(i).padStart(4, "0")}${"y".repeat(1024 * 1024 - 20)}`;

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
  for (let i = 1; i <= N; i++) {
    const r = await fetch(`${srv.url}/api/streams/big/messages`, { method: "POST", body: body(i), headers: { ...srv.adminHeaders, "Content-Type": "text/plain" } });
    expect(r.status).toBeLessThan(300);
  }
});
afterAll(async () => {
  await srv.close();
});

type Page = { messages: { seq: number; data: string }[]; more?: boolean; next_after_seq?: number };
const get = async (qs: string) => {
  const r = await fetch(`${srv.url}/api/streams/big/messages?${qs}`, { headers: srv.adminHeaders });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${qs}: ${r.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as Page;
};

describe("history of 1 MB messages from the log", () => {
  it("pages through them all with after_seq (pages cut at about 4 MiB, more and next_after_seq to go on), each once and in order, payloads whole", async () => {
    const seen: number[] = [];
    let after = 0;
    for (let page = 0; page < 20; page++) {
      const p = await get(`source=log&after_seq=${after}&limit=100`);
      for (const m of p.messages) {
        expect(m.data).toBe(body(m.seq));
        seen.push(m.seq);
      }
      expect((p as { cut?: boolean }).cut).toBe(p.messages.at(-1)!.seq < N ? true : undefined);
      if (!p.more) break;
      expect(p.messages.length).toBeGreaterThan(0);
      expect(p.messages.length).toBeLessThanOrEqual(5);
      after = p.next_after_seq!;
    }
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => i + 1));
  });

  it("gives the newest that fit for the latest ones (limit 100, and limit 20), saying it cut the answer", async () => {
    for (const limit of [100, 20]) {
      const p = await get(`source=log&limit=${limit}`);
      const seqs = p.messages.map((m) => m.seq);
      expect(seqs.at(-1)).toBe(N);
      expect((p as { cut?: boolean }).cut).toBe(true);
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => N - seqs.length + 1 + i));
      expect(seqs.length).toBe(3); // a page ends within 4 MiB: three of about 1 MiB
    }
  });

  it("replays them all to a websocket subscriber and an event stream from after_seq=0", async () => {
    const ws = new WebSocket(`${srv.wsUrl("big", "after_seq=0")}`);
    const got: string[] = [];
    let closed = "";
    ws.onmessage = (e) => void got.push(String(e.data).slice(0, 4));
    ws.onclose = (e) => { closed = `${e.code} ${e.reason}`; };
    const until = Date.now() + 60_000;
    while (got.length < N && !closed && Date.now() < until) await Bun.sleep(50);
    ws.close();
    expect({ got: got.length, closed, first: got[0], last: got.at(-1) }).toEqual({ got: N, closed: "", first: "0001", last: "0040" });

    const ac = new AbortController();
    const r = await fetch(`${srv.url}/api/streams/big/events?after_seq=0`, { signal: ac.signal, headers: srv.adminHeaders });
    const reader = r.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let events = 0;
    let error = "";
    while (events < N && !error && Date.now() < until) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      const parts = text.split("\n\n");
      text = parts.pop()!;
      for (const p of parts) {
        if (p.startsWith("event: error")) error = p.slice(0, 200);
        else if (p.includes("data:")) events++;
      }
    }
    ac.abort();
    expect({ events, error }).toEqual({ events: N, error: "" });
  });
});

// query_result_mb at its least (1): a page of the log must fit one answer, whatever the messages' sizes.
// Pages of 4 MiB of payload, or 10,000 small rows (1.2 MB as JSON), failed every read and replay.
describe("history from the log with query_result_mb 1", () => {
  let small: TestServer;
  const MID = 12;
  const mid = (i: number) => `${String(i).padStart(4, "0")}${"z".repeat(300_000)}`;
  const TINY = 10_000;
  beforeAll(async () => {
    // None kept in memory: every read and replay comes from the log.
    small = await startTestServer({ query_result_mb: 1, recent_messages_per_stream: 0 });
    for (let i = 1; i <= MID; i++) {
      const r = await fetch(`${small.url}/api/streams/mid/messages`, { method: "POST", body: mid(i), headers: { ...small.adminHeaders, "Content-Type": "text/plain" } });
      expect(r.status).toBeLessThan(300);
    }
    const ws = new WebSocket(small.wsUrl("tiny"));
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    for (let i = 1; i <= TINY; i++) ws.send(`t${i}`);
    const until = Date.now() + 30_000;
    for (;;) {
      const s = (await (await fetch(`${small.url}/api/streams/tiny`, { headers: small.adminHeaders })).json()) as { messages_in: number };
      if (s.messages_in >= TINY || Date.now() > until) break;
      await Bun.sleep(50);
    }
    ws.close();
    // A message of 100,000 bytes, then one of 950,000: each can be read alone, not both in one answer.
    for (const text of ["a".repeat(100_000), "b".repeat(950_000)]) {
      const r = await fetch(`${small.url}/api/streams/ab/messages`, { method: "POST", body: text, headers: { ...small.adminHeaders, "Content-Type": "text/plain" } });
      expect(r.status).toBeLessThan(300);
    }
    // One message whose JSON alone is past 1 MB: 200,000 control characters, 6 bytes each (\u0001).
    const r = await fetch(`${small.url}/api/streams/ctl/messages`, { method: "POST", body: "\u0001".repeat(200_000), headers: { ...small.adminHeaders, "Content-Type": "text/plain" } });
    expect(r.status).toBeLessThan(300);
  });
  afterAll(async () => {
    await small.close();
  });

  const pageThrough = async (stream: string, limit: number) => {
    const seen: number[] = [];
    let after = 0;
    for (let page = 0; page < 200; page++) {
      const r = await fetch(`${small.url}/api/streams/${stream}/messages?source=log&after_seq=${after}&limit=${limit}`, { headers: small.adminHeaders });
      const text = await r.text();
      expect(`${r.status} ${text.slice(0, 200)}`).toStartWith("200 ");
      const p = JSON.parse(text) as Page;
      seen.push(...p.messages.map((m) => m.seq));
      if (!p.more) break;
      after = p.next_after_seq!;
    }
    return seen;
  };

  it("pages through big and small messages with after_seq, each once", async () => {
    expect(await pageThrough("mid", 100)).toEqual(Array.from({ length: MID }, (_, i) => i + 1));
    expect(await pageThrough("tiny", 10_000)).toEqual(Array.from({ length: TINY }, (_, i) => i + 1));
  });

  it("ends a page before a message that would take it past the cap, and gives that one on the next page", async () => {
    expect(await pageThrough("ab", 100)).toEqual([1, 2]);
    const ws = new WebSocket(small.wsUrl("ab", "after_seq=0"));
    const sizes: number[] = [];
    let closed = "";
    ws.onmessage = (e) => void sizes.push(String(e.data).length);
    ws.onclose = (e) => { closed = `${e.code} ${e.reason}`; };
    const until = Date.now() + 30_000;
    while (sizes.length < 2 && !closed && Date.now() < until) await Bun.sleep(50);
    ws.close();
    expect({ sizes, closed }).toEqual({ sizes: [100_000, 950_000], closed: "" });
  });

  it("gives the latest that fit, saying it cut the answer", async () => {
    for (const stream of ["mid", "tiny"]) {
      const r = await fetch(`${small.url}/api/streams/${stream}/messages?source=log&limit=10000`, { headers: small.adminHeaders });
      const text = await r.text();
      expect(`${r.status} ${text.slice(0, 200)}`).toStartWith("200 ");
      const p = JSON.parse(text) as Page & { cut?: boolean };
      expect(p.cut).toBe(true);
      expect(p.messages.at(-1)!.seq).toBe(stream === "mid" ? MID : TINY);
    }
  });

  it("replays both to websocket subscribers from after_seq=0", async () => {
    for (const [stream, n] of [["mid", MID], ["tiny", TINY]] as const) {
      const ws = new WebSocket(small.wsUrl(stream, "after_seq=0"));
      let got = 0;
      let closed = "";
      ws.onmessage = () => void got++;
      ws.onclose = (e) => { closed = `${e.code} ${e.reason}`; };
      const until = Date.now() + 60_000;
      while (got < n && !closed && Date.now() < until) await Bun.sleep(50);
      ws.close();
      expect({ stream, got, closed }).toEqual({ stream, got: n, closed: "" });
    }
  });

  it("says a message too big for one answer needs a larger query_result_mb, over HTTP and to a replaying subscriber", async () => {
    const r = await fetch(`${small.url}/api/streams/ctl/messages?source=log&after_seq=0`, { headers: small.adminHeaders });
    expect(r.status).toBe(500);
    expect(((await r.json()) as { error: { message: string } }).error.message).toBe("reading the log failed: a message there is larger than one answer may be (query_result_mb 1); raise query_result_mb to read it");
    const ws = new WebSocket(small.wsUrl("ctl", "after_seq=0"));
    const closed = await new Promise<string>((resolve) => { ws.onclose = (e) => resolve(`${e.code} ${e.reason}`); });
    expect(closed).toStartWith("1011 reading the log failed: a message there is larger than one answer may be (query_result_mb 1)");
  });
});

describe("recent messages from memory", () => {
  it("come in pages of a log page's size too: the newest that fit, or the oldest after after_seq, saying so", async () => {
    // Memory set to hold all 40 messages of 1 MB of the stream (64 MiB): an answer of all of them was 40 MB.
    const mem = await startTestServer({ recent_bytes_per_stream: 64 * 1024 * 1024 });
    try {
      for (let i = 1; i <= N; i++) {
        const r = await fetch(`${mem.url}/api/streams/big/messages`, { method: "POST", body: body(i), headers: { ...mem.adminHeaders, "Content-Type": "text/plain" } });
        expect(r.status).toBeLessThan(300);
      }
      const get = async (qs: string) => (await (await fetch(`${mem.url}/api/streams/big/messages?${qs}`, { headers: mem.adminHeaders })).json()) as Page & { source: string; cut?: boolean };
      const latest = await get("source=memory&limit=100");
      expect({ source: latest.source, cut: latest.cut, seqs: latest.messages.map((m) => m.seq) }).toEqual({ source: "memory", cut: true, seqs: [38, 39, 40] });
      const first = await get("after_seq=0&limit=100");
      expect({ source: first.source, cut: first.cut, more: first.more, next: first.next_after_seq }).toEqual({ source: "memory", cut: true, more: true, next: 3 });
      expect(first.messages.map((m) => m.data)).toEqual([1, 2, 3].map(body));
      // Multi-byte text counts the same from memory and from the log (UTF-8 bytes): 800,000 bytes each, five a page.
      for (let i = 1; i <= 10; i++) {
        const r = await fetch(`${mem.url}/api/streams/emoji/messages`, { method: "POST", body: `${i}${"😀".repeat(200_000)}`, headers: { ...mem.adminHeaders, "Content-Type": "text/plain" } });
        expect(r.status).toBeLessThan(300);
      }
      for (const qs of ["after_seq=0&limit=100", "last=10"]) {
        const seqs = async (source: string) => ((await (await fetch(`${mem.url}/api/streams/emoji/messages?${qs}&source=${source}`, { headers: mem.adminHeaders })).json()) as Page).messages.map((m) => m.seq);
        const fromMemory = await seqs("memory");
        expect(fromMemory).toEqual(qs === "last=10" ? [6, 7, 8, 9, 10] : [1, 2, 3, 4, 5]);
        expect(await seqs("log")).toEqual(fromMemory);
      }
      const all = await get("source=memory&limit=3");
      expect({ cut: all.cut, seqs: all.messages.map((m) => m.seq) }).toEqual({ cut: undefined, seqs: [38, 39, 40] });
    } finally {
      await mem.close();
    }
  });
});
