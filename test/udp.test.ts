import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { MAIN } from "./support/cli.ts";
import { connect } from "./support/client.ts";
import { freeUdpPort, startTestServer, waitFor, type TestServer } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

/** A small seeded generator, so a failing mix can be replayed. */
function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

async function sender() {
  return Bun.udpSocket({ hostname: "127.0.0.1" });
}

describe("UDP ingest", () => {
  let srv: TestServer;
  afterEach(async () => { await srv.close(); });

  it("takes every good datagram once and in order per sender among corrupt, cut, oversized and misaddressed ones, counting each reject by reason", async () => {
    const port = await freeUdpPort();
    srv = await startTestServer({ udp_allow: ["spin*"], udp_max_datagram_bytes: 2048 }, { udpPort: port });
    const sub = await connect(srv.wsUrl("spin30"));
    const senders = [await sender(), await sender()];
    const random = rng(42);
    const expected: Record<string, number> = {};
    const nextSeq = [0, 0];
    const total = 4000;
    const good = (s: number, seq: number, stream = "spin30") => JSON.stringify({ stream, sender: s, seq, pad: "x".repeat(20) });
    for (let i = 0; i < total; i++) {
      const s = i % 2;
      const r = random();
      let datagram: Uint8Array;
      let reason: string | null = null;
      if (r < 0.3) {
        // Random bytes overwritten, as the IpEvent test client does; one of them 0xFF, which UTF-8 never has.
        const b = new TextEncoder().encode(good(s, -1));
        const hits = 1 + Math.floor(random() * 4);
        for (let k = 0; k < hits; k++) b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
        b[Math.floor(random() * b.length)] = 0xff;
        datagram = b;
        reason = "bad_utf8";
      } else if (r < 0.38) {
        const text = good(s, -1);
        datagram = new TextEncoder().encode(text.slice(0, 1 + Math.floor(random() * (text.length - 2))));
        reason = "truncated";
      } else if (r < 0.43) {
        datagram = new TextEncoder().encode(JSON.stringify({ stream: "spin30", pad: "y".repeat(3000) }));
        reason = "too_large";
      } else if (r < 0.48) {
        datagram = new TextEncoder().encode(good(s, -1, "spin 30"));
        reason = "bad_stream";
      } else if (r < 0.52) {
        datagram = new TextEncoder().encode(good(s, -1, "other"));
        reason = "not_allowed";
      } else if (r < 0.55) {
        datagram = new TextEncoder().encode("#" + good(s, -1));
        reason = "bad_json";
      } else {
        datagram = new TextEncoder().encode(good(s, nextSeq[s]!++));
      }
      if (reason) expected[reason] = (expected[reason] ?? 0) + 1;
      senders[s]!.send(datagram, port, "127.0.0.1");
      if (i % 100 === 99) await Bun.sleep(2);
    }
    const goodCount = nextSeq[0]! + nextSeq[1]!;
    expect(goodCount).toBeGreaterThan(1000);
    const got = await sub.received(goodCount, 20_000);
    await Bun.sleep(100);
    expect(got.length).toBe(goodCount);
    for (const s of [0, 1]) {
      const seqs = got.map((m) => JSON.parse(m as string)).filter((m) => m.sender === s).map((m) => m.seq);
      expect(seqs).toEqual([...Array(nextSeq[s]).keys()]);
    }
    const ingest = (await (await fetch(`${srv.url}/api/ingest`)).json()).udp;
    const main = ingest.listeners.find((l: { port: number }) => l.port === port);
    expect(main).toMatchObject({ format: "json", datagrams: total, accepted: goodCount, rejected: total - goodCount, errors: 0, kernel_drops: 0 });
    expect(main.rejected_by_reason).toEqual(expected);
    // The socket got the 4 MiB receive buffer asked for (Linux reports double), or at least what rmem_max allows.
    const rmemMax = Number((await Bun.file("/proc/sys/net/core/rmem_max").text()).trim());
    expect(main.receive_buffer_bytes).toBeGreaterThanOrEqual(Math.min(2 * 4 * 1024 * 1024, 2 * rmemMax));
    expect(ingest.recent_rejects.length).toBe(50);
    expect(ingest.recent_rejects[0]).toMatchObject({ port, from: expect.stringMatching(/^127\.0\.0\.1:\d+$/), reason: expect.any(String), detail: expect.any(String) });
    // Rejects are sampled into the log, never one line per packet.
    expect(srv.logs.filter((l) => l.includes("udp datagram rejected")).length).toBeLessThanOrEqual(2);
    // The listener is still up.
    senders[0]!.send(good(0, 9999), port, "127.0.0.1");
    expect(JSON.parse((await sub.received(goodCount + 1))[goodCount] as string).seq).toBe(9999);
  });

  it("publishes through the hub with origin udp:<addr>:<port>, so every sink sees it", async () => {
    const port = await freeUdpPort();
    srv = await startTestServer({}, { udpPort: port });
    const seen: { origin: string; seq: number }[] = [];
    srv.hub.onMessage((m) => seen.push(m));
    const s = await sender();
    s.send('{"stream":"spin30","v":1}', port, "127.0.0.1");
    await waitFor(() => seen.length === 1, "the message");
    expect(seen[0]).toMatchObject({ origin: `udp:127.0.0.1:${s.port}`, seq: 1 });
    expect((await (await fetch(`${srv.url}/api/streams/spin30`)).json()).publishers).toBe(1);
  });

  it("runs extra listeners mapping ports to a stream and format, from --udp and live from settings", async () => {
    const [rawPort, linePort, textPort, mainPort] = [await freeUdpPort(), await freeUdpPort(), await freeUdpPort(), await freeUdpPort()];
    srv = await startTestServer({ udp_format: "line" }, { udpPort: mainPort, udp: [{ port: rawPort, format: "raw", stream: "cam" }, { port: linePort, format: "line" }] });
    const cam = await connect(srv.wsUrl("cam"));
    const a = await connect(srv.wsUrl("a"));
    const log = await connect(srv.wsUrl("log"));
    const s = await sender();
    s.send(new Uint8Array([1, 2, 3, 250]), rawPort, "127.0.0.1");
    s.send("a\tfirst\na\tsecond", linePort, "127.0.0.1");
    s.send("a\tthird", mainPort, "127.0.0.1");
    expect([...((await cam.received(1))[0] as Uint8Array)]).toEqual([1, 2, 3, 250]);
    expect(await a.received(3)).toEqual(["first", "second", "third"]);
    srv.store.update({ udp_listeners: [{ port: textPort, format: "text", stream: "log" }] });
    await waitFor(() => srv.udp.listener(textPort) !== undefined, "the new listener");
    s.send("12:00 started\nall good", textPort, "127.0.0.1");
    expect(await log.received(1)).toEqual(["12:00 started\nall good"]);
    const ports = (await (await fetch(`${srv.url}/api/ingest`)).json()).udp.listeners.map((l: { port: number; format: string; stream: string | null }) => [l.port, l.format, l.stream]);
    expect(ports).toEqual(expect.arrayContaining([[rawPort, "raw", "cam"], [linePort, "line", null], [textPort, "text", "log"], [mainPort, "line", null]]));
    srv.store.update({ udp_listeners: [] });
    await waitFor(() => srv.udp.listener(textPort) === undefined, "the listener to stop");
  });

  it("applies new rules to the next datagram when settings change", async () => {
    const port = await freeUdpPort();
    srv = await startTestServer({}, { udpPort: port });
    const s = await sender();
    s.send('{"stream":"other"}', port, "127.0.0.1");
    await waitFor(() => srv.udp.listener(port)!.accepted === 1, "the first datagram");
    srv.store.update({ udp_allow: ["spin*"] });
    s.send('{"stream":"other"}', port, "127.0.0.1");
    await waitFor(() => srv.udp.listener(port)!.rejected.not_allowed === 1, "the reject");
  });

  it("shows UDP figures in /metrics", async () => {
    const port = await freeUdpPort();
    srv = await startTestServer({}, { udpPort: port });
    const s = await sender();
    s.send('{"stream":"spin30"}', port, "127.0.0.1");
    s.send("{nope", port, "127.0.0.1");
    await waitFor(() => srv.udp.listener(port)!.datagrams === 2, "both datagrams");
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    expect(text).toContain(`switchyard_udp_datagrams_total{port="${port}",format="json"} 2`);
    expect(text).toContain(`switchyard_udp_accepted_total{port="${port}",format="json"} 1`);
    expect(text).toContain(`switchyard_udp_rejected_total{port="${port}",reason="truncated"} 1`);
    expect(text).toContain(`switchyard_udp_kernel_drops_total{port="${port}",format="json"} 0`);
  });

  it("switchyard send --udp turns standard input lines into datagrams", async () => {
    const port = await freeUdpPort();
    srv = await startTestServer({}, { udpPort: port });
    const sub = await connect(srv.wsUrl("spin30"));
    const p = Bun.spawn([process.execPath, MAIN, "send", "--udp", `127.0.0.1:${port}`, "--stream", "spin30"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    p.stdin.write('{"v":1}\n{"stream":"elsewhere","v":2}\n\nplain text\n');
    await p.stdin.end();
    expect(await p.exited).toBe(0);
    expect(await new Response(p.stderr).text()).toBe(`sent 3 datagrams to 127.0.0.1:${port}\n`);
    expect((await sub.received(3)).map((m) => JSON.parse(m as string))).toEqual([
      { v: 1, stream: "spin30" }, { stream: "spin30", v: 2 }, { stream: "spin30", data: "plain text" },
    ]);
    const plain = Bun.spawn([process.execPath, MAIN, "send", "--udp", String(port)], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    plain.stdin.write('{"stream":"spin30","v":3}\n');
    await plain.stdin.end();
    expect(await plain.exited).toBe(0);
    expect(JSON.parse((await sub.received(4))[3] as string)).toEqual({ stream: "spin30", v: 3 });
  });
});

describe("recent messages: GET /api/streams/{name}/messages", () => {
  let srv: TestServer;
  afterEach(async () => { await srv.close(); });

  const post = (stream: string, body: string | Uint8Array, type = "text/plain") =>
    fetch(`${srv.url}/api/streams/${stream}/messages`, { method: "POST", body, headers: { "content-type": type } }).then((r) => r.json());

  it("returns the latest messages, oldest first, with limit, since and after_seq", async () => {
    srv = await startTestServer({ recent_messages_per_stream: 5 });
    for (let i = 1; i <= 7; i++) await post("dev/abc", `m${i}`);
    // Memory keeps 5; the default limit (100) wants more, so the log answers, back to the first.
    const all = await (await fetch(`${srv.url}/api/streams/dev/abc/messages`)).json();
    expect(all).toMatchObject({ stream: "dev/abc", source: "log" });
    expect(all.messages.map((m: { data: string }) => m.data)).toEqual(["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    expect(all.messages[0]).toMatchObject({ seq: 1, kind: "text", origin: "http:127.0.0.1", time: expect.stringMatching(/^\d{4}-/) });
    const memory = await (await fetch(`${srv.url}/api/streams/dev/abc/messages?source=memory`)).json();
    expect(memory.messages.map((m: { data: string }) => m.data)).toEqual(["m3", "m4", "m5", "m6", "m7"]);
    const old = await (await fetch(`${srv.url}/api/streams/dev/abc/messages?until=${all.messages[1].ts}`)).json();
    expect(old).toMatchObject({ source: "log", messages: [{ seq: 1 }, { seq: 2 }] });
    const logAfter = await (await fetch(`${srv.url}/api/streams/dev/abc/messages?source=log&after_seq=5&since=${all.messages[0].ts}`)).json();
    expect(logAfter.messages.map((m: { seq: number }) => m.seq)).toEqual([6, 7]);
    const two = await (await fetch(`${srv.url}/api/streams/dev/abc/messages?limit=2`)).json();
    expect(two.source).toBe("memory");
    expect(two.messages.map((m: { seq: number }) => m.seq)).toEqual([6, 7]);
    const after = await (await fetch(`${srv.url}/api/streams/dev/abc/messages?after_seq=5`)).json();
    expect(after.messages.map((m: { seq: number }) => m.seq)).toEqual([6, 7]);
    const since = await (await fetch(`${srv.url}/api/streams/dev/abc/messages?since=${all.messages[3].ts}`)).json();
    expect(since.messages.map((m: { seq: number }) => m.seq)).toEqual([5, 6, 7]);
    const iso = await (await fetch(`${srv.url}/api/streams/dev/abc/messages?since=2000-01-01T00:00:00Z&limit=1`)).json();
    expect(iso.messages.map((m: { seq: number }) => m.seq)).toEqual([7]);
  });

  it("returns binary as base64, keeps messages after the stream is gone, and explains bad queries", async () => {
    srv = await startTestServer({ stream_linger_seconds: 0 });
    await post("bin", new Uint8Array([0, 1, 254]), "application/octet-stream");
    srv.hub.tick();
    srv.hub.tick();
    expect(srv.hub.stream("bin")).toBeUndefined();
    const r = await (await fetch(`${srv.url}/api/streams/bin/messages`)).json();
    expect(r.messages[0]).toMatchObject({ kind: "binary", data: Buffer.from([0, 1, 254]).toString("base64") });
    const none = await fetch(`${srv.url}/api/streams/never/messages`);
    expect(none.status).toBe(404);
    const bad = await fetch(`${srv.url}/api/streams/bin/messages?limit=0`);
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.message).toBe('limit: "0" is not valid; allowed: a whole number from 1 to 10000');
    const badSince = await fetch(`${srv.url}/api/streams/bin/messages?since=yesterday`);
    expect((await badSince.json()).error.message).toContain("allowed: an ISO 8601 time");
  });

  it("bounds memory across streams, dropping the least recently written stream first", async () => {
    // Each 10-byte message counts 210 bytes (payload + 200 of overhead): two fit in 425.
    srv = await startTestServer({ recent_total_bytes: 425 });
    await post("s1", "0123456789");
    await post("s2", "0123456789");
    await post("s1", "0123456789");
    // 630 bytes > 425: s2, written least recently, goes from memory (the log still has it).
    expect((await fetch(`${srv.url}/api/streams/s2/messages?source=memory`)).status).toBe(404);
    expect((await (await fetch(`${srv.url}/api/streams/s1/messages?source=memory`)).json()).messages).toHaveLength(2);
    await post("s3", "0123456789");
    // Now s1 is the least recently written.
    expect((await fetch(`${srv.url}/api/streams/s1/messages?source=memory`)).status).toBe(404);
    expect((await (await fetch(`${srv.url}/api/streams/s3/messages?source=memory`)).json()).messages).toHaveLength(1);
    // History comes from the log.
    const s2 = await (await fetch(`${srv.url}/api/streams/s2/messages`)).json();
    expect(s2).toMatchObject({ source: "log", messages: [{ seq: 1, data: "0123456789", kind: "text" }] });
    expect(srv.recent.bytes).toBe(210);
  });
});
