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
    for (let page = 0; page < 10; page++) {
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
      expect(seqs.length).toBeGreaterThanOrEqual(4);
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
