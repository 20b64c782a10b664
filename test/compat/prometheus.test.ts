import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { connect } from "../support/client.ts";
import { freeUdpPort, startTestServer, waitFor, type TestServer } from "../support/server.ts";

// Real servers, sockets and promtool.
setDefaultTimeout(60_000);

let srv: TestServer | null = null;
afterEach(async () => { await srv?.close(); srv = null; });

/** Runs Debian's `promtool check metrics` on a scrape; answers its exit code and what it printed. */
async function promtoolCheck(text: string) {
  const p = Bun.spawn(["promtool", "check", "metrics"], { stdin: new Blob([text]), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, said: (out + err).trim() };
}

/** One sample's value from a scrape, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("compat: Prometheus", () => {
  it("passes promtool check metrics on a busy server, with build info, start time and every reject reason from 0", async () => {
    const udpPort = await freeUdpPort();
    srv = await startTestServer({}, { udpPort });
    const sub = await connect(srv.wsUrl("spin30"));
    const pub = await connect(srv.wsUrl("spin30"));
    pub.ws.send("hello");
    pub.ws.send(new Uint8Array([1, 2, 3]));
    await sub.received(2);
    await connect(srv.wsUrl("bad name!")); // refused: counted by reason
    const udp = await Bun.udpSocket({});
    udp.send(JSON.stringify({ stream: "spin31", v: 1 }), udpPort, "127.0.0.1");
    udp.send("not json", udpPort, "127.0.0.1");
    await waitFor(() => srv!.udp.snapshot().listeners.some((l) => l.datagrams >= 2), "both datagrams");
    udp.close();
    await fetch(`${srv.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "0", stream: "spin30", destination: "ws://127.0.0.1:9/ws/x", token: "" }) });
    await waitFor(() => (srv!.destinations.get("0")?.status.attempts ?? 0) >= 1, "a destination attempt");

    const text = await (await fetch(`${srv.url}/metrics`)).text();
    const check = await promtoolCheck(text);
    expect(check.said).toBe("");
    expect(check.code).toBe(0);
    expect(text).toMatch(/^switchyard_build_info\{version="[^"]+",commit="[^"]+",bun="[^"]+"\} 1$/m);
    const start = sample(text, "process_start_time_seconds")!;
    expect(Math.abs(start - Date.now() / 1000)).toBeLessThan(600);
    expect(sample(text, 'switchyard_stream_received_bytes_total{stream="spin30"}')).toBe(8);
    expect(sample(text, "switchyard_received_bytes_total")).toBeGreaterThanOrEqual(8);
    expect(sample(text, 'switchyard_connections_refused_total{reason="policy"}')).toBe(1);
    expect(sample(text, 'switchyard_connections_refused_total{reason="max_connections"}')).toBe(0);
    expect(sample(text, `switchyard_udp_rejected_total{port="${udpPort}",reason="bad_json"}`)).toBe(1);
    for (const reason of ["too_large", "truncated", "empty", "bad_utf8", "not_object", "no_stream", "bad_stream", "not_allowed", "bad_line"]) {
      expect(sample(text, `switchyard_udp_rejected_total{port="${udpPort}",reason="${reason}"}`)).toBe(0);
    }
    expect(sample(text, 'switchyard_destination_attempts_total{id="0",stream="spin30"}')).toBeGreaterThanOrEqual(1);
    sub.close();
    pub.close();
  });

  it("never lets a stream's counters go down when the stream comes back after stream_linger_seconds", async () => {
    srv = await startTestServer({ stream_linger_seconds: 60 });
    const post = (body: string) => fetch(`${srv!.url}/api/streams/rare/messages`, { method: "POST", body });
    await post("abc");
    await post("defg");
    const before = await (await fetch(`${srv.url}/metrics`)).text();
    expect(sample(before, 'switchyard_stream_messages_in_total{stream="rare"}')).toBe(2);
    // The hub notes the stream idle on one tick and retires it on a later one, once the linger is over.
    srv.hub.tick();
    srv.hub.tick();
    srv.store.update({ stream_linger_seconds: 0 });
    srv.hub.tick();
    expect(srv.hub.stream("rare")).toBeUndefined();
    await post("h");
    const after = await (await fetch(`${srv.url}/metrics`)).text();
    expect(sample(after, 'switchyard_stream_messages_in_total{stream="rare"}')).toBe(3);
    expect(sample(after, 'switchyard_stream_received_bytes_total{stream="rare"}')).toBe(8);
    expect((await promtoolCheck(after)).code).toBe(0);
  });
});
