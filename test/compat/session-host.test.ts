import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { createHmac } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../support/client.ts";
import { MAIN } from "../support/cli.ts";
import { startTestServer, tempDir, waitFor, type TestServer } from "../support/server.ts";

// Real servers, curl, sh and the CLI in subprocesses.
setDefaultTimeout(90_000);

const servers: TestServer[] = [];
const dirs: { remove(): void }[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => {});
  for (const d of dirs.splice(0)) d.remove();
});

/** spinner-amax's sbc/files/session-rules, verbatim: the boot script a lab's session host runs. */
const SESSION_RULES = `#!/bin/sh
videoTokenFile="/etc/practable/video.token"
videoAccessFile="/etc/practable/video.access"
dataTokenFile="/etc/practable/data.token"
dataAccessFile="/etc/practable/data.access"

videoToken=$(cat "$videoTokenFile")
videoAccess=$(cat "$videoAccessFile")
dataToken=$(cat "$dataTokenFile")
dataAccess=$(cat "$dataAccessFile")

curl -X POST -H "Content-Type: application/json" -d '{"stream":"video","destination":"'"\${videoAccess}"'","id":"0","token":"'"\${videoToken}"'"}' http://localhost:8888/api/destinations
curl -X POST -H "Content-Type: application/json" -d '{"stream":"data","destination":"'"\${dataAccess}"'","id":"1","token":"'"\${dataToken}"'"}' http://localhost:8888/api/destinations 
`;

const LAB_SECRET = "spinner-lab-relay-secret";

/** A token as practable's `relay token` builds it (see practable-tokens.test.ts), HS256 with `secret`. */
function relayToken(secret: string, topic: string, audience: string, scopes: string[]) {
  const b64 = (x: unknown) => Buffer.from(JSON.stringify(x)).toString("base64url");
  const iat = Math.floor(Date.now() / 1000) - 1;
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ booking_id: "relay-token-cli", topic, prefix: "session", scopes, aud: [audience], exp: iat + 31_536_000, nbf: iat, iat })}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

async function run(cmd: string[], opts: { stdin?: string; env?: Record<string, string> } = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHYARD_")));
  const p = Bun.spawn(cmd, { env: { ...clean, ...opts.env }, stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

describe("compat: spinner-amax's session-rules against a Switchyard host and a Switchyard relay", () => {
  it("runs the boot script verbatim (paths and port changed), relays video and data, and survives a second boot and a rule round trip", async () => {
    // The relay: a Switchyard with the lab's relay secret imported.
    const relayDir = tempDir();
    dirs.push(relayDir);
    expect((await run([process.execPath, MAIN, "secret", "set", "--stdin", "--data-dir", relayDir.dir], { stdin: LAB_SECRET })).code).toBe(0);
    const relay = await startTestServer({}, { dataDir: relayDir.dir });
    servers.push(relay);
    const host = await startTestServer();
    servers.push(host);
    // /etc/practable as the lab's configure and sessiontoken scripts fill it (video: write only).
    const etc = join(host.dataDir, "etc-practable");
    mkdirSync(etc);
    writeFileSync(join(etc, "video.access"), `${relay.url}/session/spin30-video\n`);
    writeFileSync(join(etc, "data.access"), `${relay.url}/session/spin30-data\n`);
    writeFileSync(join(etc, "video.token"), relayToken(LAB_SECRET, "spin30-video", relay.url, ["write"]) + "\n");
    writeFileSync(join(etc, "data.token"), relayToken(LAB_SECRET, "spin30-data", relay.url, ["write", "read"]) + "\n");
    const script = SESSION_RULES.replaceAll("/etc/practable/", `${etc}/`).replaceAll("localhost:8888", `localhost:${host.port}`);
    const scriptFile = join(etc, "session-rules");
    writeFileSync(scriptFile, script, { mode: 0o755 });

    const boot = await run(["sh", scriptFile]);
    expect(boot.code).toBe(0);
    const answers = boot.stdout.replace(/\}\{/g, "}\n{").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    expect(answers.map((a) => [a.id, a.stream, a.token])).toEqual([["0", "video", "<redacted>"], ["1", "data", "<redacted>"]]);
    await waitFor(() => host.destinations.list().every((d) => d.status.up), "both destinations up", 20_000);

    const video = await connect(relay.wsUrl("spin30-video"));
    const data = await connect(relay.wsUrl("spin30-data"));
    const camera = await connect(host.wsUrl("video"));
    const sensor = await connect(host.wsUrl("data"));
    camera.ws.send(new Uint8Array([0x47, 1, 2, 3]));
    sensor.ws.send('{"v":1}');
    expect([...((await video.received(1))[0] as Uint8Array)]).toEqual([0x47, 1, 2, 3]);
    expect(await data.received(1)).toEqual(['{"v":1}']);
    // The data token reads: what the remote user sends comes back to the rig.
    data.ws.send('{"set":"speed","to":2}');
    expect(await sensor.received(1)).toEqual(['{"set":"speed","to":2}']);

    // A second boot re-posts the same rules: nothing reconnects.
    const connects = host.destinations.list().map((d) => d.status.connects);
    expect((await run(["sh", scriptFile])).code).toBe(0);
    // The operator reads the rules and posts each back (tokens redacted, status included): nothing changes.
    const all = (await (await fetch(`${host.url}/api/destinations/all`)).json()) as Record<string, Record<string, unknown>>;
    for (const rule of Object.values(all)) {
      const back = await fetch(`${host.url}/api/destinations`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(rule) });
      expect(back.status).toBe(200);
    }
    expect(host.destinations.list().map((d) => d.status.connects)).toEqual(connects);
    camera.ws.send(new Uint8Array([0x47, 9]));
    expect([...((await video.received(2))[1] as Uint8Array)]).toEqual([0x47, 9]);
    for (const c of [video, data, camera, sensor]) c.close();
  });
});

/**
 * A server-sent events client as the `eventsource` package behaves: it parses
 * id/event/data/retry, and when the connection ends it waits `retry` ms and
 * reconnects with Last-Event-ID.
 */
class EventSourceLike {
  events: { id?: string; event: string; data: string }[] = [];
  lastEventId = "";
  retry = 3000;
  connects = 0;
  private closed = false;
  private abort: AbortController | null = null;

  constructor(private readonly url: string) {
    void this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      this.abort = new AbortController();
      try {
        const res = await fetch(this.url, { headers: this.lastEventId ? { "Last-Event-ID": this.lastEventId } : {}, signal: this.abort.signal });
        this.connects++;
        const reader = res.body!.getReader();
        let buf = "";
        let block: { id?: string; event?: string; data?: string } = {};
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += new TextDecoder().decode(value);
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line === "") {
              if (block.id !== undefined) this.lastEventId = block.id;
              if (block.data !== undefined) this.events.push({ id: block.id, event: block.event ?? "message", data: block.data });
              block = {};
            } else if (!line.startsWith(":")) {
              const c = line.indexOf(":");
              const [k, v] = c < 0 ? [line, ""] : [line.slice(0, c), line.slice(c + 1).replace(/^ /, "")];
              if (k === "retry" && /^\d+$/.test(v)) this.retry = Number(v);
              else if (k === "id" || k === "event" || k === "data") block[k] = v;
            }
          }
        }
      } catch { /* dropped: reconnect below */ }
      if (!this.closed) await Bun.sleep(this.retry);
    }
  }

  /** Drops the connection as a network failure would (the loop reconnects). */
  drop(): void {
    this.abort?.abort();
  }

  close(): void {
    this.closed = true;
    this.abort?.abort();
  }
}

describe("compat: an EventSource client on /api/events", () => {
  it("reconnects after a dropped connection with Last-Event-ID (no snapshot), and after a restart (a fresh snapshot)", async () => {
    const dir = tempDir();
    dirs.push(dir);
    let srv = await startTestServer({}, { dataDir: dir.dir });
    const port = srv.port;
    const es = new EventSourceLike(`${srv.url}/api/events`);
    try {
      await waitFor(() => es.events.length === 1, "the first snapshot");
      expect(es.events[0]!.event).toBe("snapshot");
      expect(es.retry).toBe(3000);
      await fetch(`${srv.url}/api/streams/rig1/messages`, { method: "POST", body: "x" });
      await waitFor(() => es.events.some((e) => e.event === "stream_added"), "rig1 added");
      es.drop();
      await fetch(`${srv.url}/api/streams/rig2/messages`, { method: "POST", body: "x" });
      await waitFor(() => es.connects === 2 && es.events.some((e) => e.data.includes('"rig2"')), "the missed event after the reconnect", 15_000);
      // Resumed: the event it missed, and no second snapshot.
      expect(es.events.map((e) => e.event)).toEqual(["snapshot", "stream_added", "stream_added"]);

      await srv.close();
      srv = await startTestServer({}, { dataDir: dir.dir, port });
      await waitFor(() => es.connects >= 3 && es.events.filter((e) => e.event === "snapshot").length === 2, "a snapshot from the restarted server", 30_000);
      await fetch(`${srv.url}/api/streams/rig3/messages`, { method: "POST", body: "x" });
      await waitFor(() => es.events.some((e) => e.data.includes('"rig3"')), "an event from the restarted server");
    } finally {
      es.close();
      await srv.close();
    }
  });
});
