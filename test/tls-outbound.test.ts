import { afterAll, afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { connect } from "./support/client.ts";
import { startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";
import { makeCa, makeLeaf } from "./support/tls.ts";

// Real servers on both ends, TLS handshakes and reconnect back-off: more than Bun's 5 s default on a busy machine.
setDefaultTimeout(60_000);

const tmp = tempDir("switchyard-tls-out-");
const lab = makeCa(tmp.dir, "lab");
const relayPair = makeLeaf(tmp.dir, "relay", lab);
const expiredPair = makeLeaf(tmp.dir, "expired", lab, { notBefore: "20200101000000Z", notAfter: "20200201000000Z" });
afterAll(() => tmp.remove());

const FAST = { baseMs: 100, maxMs: 400 };
const servers: TestServer[] = [];
const others: { stop(force: boolean): unknown }[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => {});
  for (const o of others.splice(0)) o.stop(true);
});

const status = async (srv: TestServer, id: string) =>
  (await (await fetch(`${srv.url}/api/destinations/${id}`, { headers: srv.adminHeaders })).json()).status as { state: string; last_error: string | null };
const postRule = (srv: TestServer, rule: Record<string, unknown>) =>
  fetch(`${srv.url}/api/destinations`, { method: "POST", body: JSON.stringify(rule), headers: { "Content-Type": "application/json", ...srv.adminHeaders } });

/** A Switchyard relay on HTTPS with a certificate from the lab's own CA. */
async function tlsRelay(): Promise<TestServer> {
  const relay = await startTestServer({}, { backoff: FAST, tls: { tlsCert: relayPair.cert, tlsKey: relayPair.key } });
  servers.push(relay);
  return relay;
}

describe("outbound TLS: wss:// destinations and https:// webhooks", () => {
  it("relays to a Switchyard over wss:// with a private CA when tls_ca_file names it, with https/wss URLs throughout", async () => {
    const relay = await tlsRelay();
    const host = await startTestServer({ tls_ca_file: lab.cert }, { backoff: FAST });
    servers.push(host);
    const token = await signStreamToken(relay.secret, { topic: "spin30-data", scopes: ["read", "write"], ttlSeconds: 3600, audience: relay.url });
    expect(relay.url).toStartWith("https://");
    // The relay's access answer names wss://, built from the HTTPS request.
    const access = await fetch(`${relay.url}/session/spin30-data`, { method: "POST", headers: { Authorization: token }, tls: { ca: await Bun.file(lab.cert).text() } });
    expect((await access.json()).uri).toMatch(new RegExp(`^wss://127\\.0\\.0\\.1:${relay.port}/session/spin30-data\\?code=`));
    expect((await postRule(host, { id: "lab", stream: "spin30", destination: `${relay.url}/session/spin30-data`, token })).status).toBe(200);
    await waitFor(async () => (await status(host, "lab")).state === "connected", "the wss:// destination to connect", 20_000);
    const watcher = await connect(relay.wsUrl("spin30-data"), undefined, undefined, { ca: await Bun.file(lab.cert).text() });
    const pub = await connect(host.wsUrl("spin30"));
    pub.ws.send("over wss");
    expect(await watcher.received(1)).toEqual(["over wss"]);
    watcher.close();
    pub.close();
  });

  it("refuses the same relay without the CA setting, with a status that says the certificate is not trusted", async () => {
    const relay = await tlsRelay();
    const host = await startTestServer({}, { backoff: FAST });
    servers.push(host);
    const token = await signStreamToken(relay.secret, { topic: "spin30-data", scopes: ["read", "write"], ttlSeconds: 3600, audience: relay.url });
    await postRule(host, { id: "lab", stream: "spin30", destination: `${relay.url}/session/spin30-data`, token });
    await waitFor(async () => (await status(host, "lab")).last_error !== null, "the destination to fail", 20_000);
    const s = await status(host, "lab");
    expect(s.state).not.toBe("connected");
    expect(s.last_error).toContain(`the TLS certificate of 127.0.0.1:${relay.port} is not signed by a trusted CA`);
    expect(s.last_error).toContain("set tls_ca_file");
    // A direct wss:// rule fails the same way, in the websocket handshake.
    await postRule(host, { id: "direct", stream: "cam", destination: relay.wsUrl("cam").replace("localhost", "127.0.0.1"), token: "" });
    await waitFor(async () => (await status(host, "direct")).last_error !== null, "the direct destination to fail", 20_000);
    expect((await status(host, "direct")).last_error).toContain("is not signed by a trusted CA (UNABLE_TO_VERIFY_LEAF_SIGNATURE)");
    // Setting the CA live lets both through without a restart.
    const r = await fetch(`${host.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ tls_ca_file: lab.cert }), headers: { "Content-Type": "application/json", ...host.adminHeaders } });
    expect(r.status).toBe(200);
    await waitFor(async () => (await status(host, "lab")).state === "connected" && (await status(host, "direct")).state === "connected", "both to connect with the CA", 20_000);
  });

  it("delivers webhooks over https:// with the CA setting, and names an expired certificate", async () => {
    const bodies: string[] = [];
    const hook = Bun.serve({ port: 0, hostname: "127.0.0.1", tls: { cert: Bun.file(relayPair.cert), key: Bun.file(relayPair.key) }, async fetch(req) { bodies.push(await req.text()); return new Response("ok"); } });
    const stale = Bun.serve({ port: 0, hostname: "127.0.0.1", tls: { cert: Bun.file(expiredPair.cert), key: Bun.file(expiredPair.key) }, fetch: () => new Response("ok") });
    others.push(hook, stale);
    const host = await startTestServer({ tls_ca_file: lab.cert }, { backoff: FAST });
    servers.push(host);
    await postRule(host, { id: "hook", kind: "webhook", stream: "results", destination: `https://127.0.0.1:${hook.port}/in`, token: "" });
    await postRule(host, { id: "stale", kind: "webhook", stream: "results", destination: `https://127.0.0.1:${stale.port}/secret-path/abc`, token: "" });
    const pub = await connect(host.wsUrl("results"));
    pub.ws.send("result 1");
    await waitFor(() => bodies.includes("result 1"), "the webhook over https", 20_000);
    await waitFor(async () => (await status(host, "stale")).last_error !== null, "the expired webhook to fail", 20_000);
    const err = (await status(host, "stale")).last_error!;
    expect(err).toContain(`the TLS certificate of 127.0.0.1:${stale.port} has expired (CERT_HAS_EXPIRED)`);
    expect(err).not.toContain("abc");
    pub.close();
  });

  it("refuses a tls_ca_file that is missing or holds no certificate, saying which", async () => {
    const host = await startTestServer();
    servers.push(host);
    const patch = (v: string) => fetch(`${host.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ tls_ca_file: v }), headers: { "Content-Type": "application/json", ...host.adminHeaders } });
    const missing = await patch(join(tmp.dir, "nope.pem"));
    expect(missing.status).toBe(400);
    expect(await missing.text()).toContain("nope.pem cannot be read: no such file");
    const notCa = await patch(relayPair.key);
    expect(notCa.status).toBe(400);
    expect(await notCa.text()).toContain("holds no PEM certificate");
    expect((await patch("relative.pem")).status).toBe(400);
  });

  it("refuses a tls_ca_file that is a FIFO, a device or larger than 1 MiB, without blocking the server", async () => {
    const { spawnServe } = await import("./support/cli.ts");
    const { adminHeadersFor } = await import("./support/server.ts");
    const dir = tempDir();
    const fifo = join(dir.dir, "ca.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const huge = join(dir.dir, "huge.pem");
    await Bun.write(huge, `${await Bun.file(lab.cert).text()}\n${"#".repeat(1024 * 1024)}`);
    const served = await spawnServe(dir.dir);
    try {
      const base = `http://127.0.0.1:${served.port}`;
      const headers = { "Content-Type": "application/json", ...(await adminHeadersFor(dir.dir)) };
      // Reading a FIFO nobody writes to never returns: the deadline only makes the old code fail instead of hang.
      const patch = (v: string) => fetch(`${base}/api/settings`, { method: "PATCH", body: JSON.stringify({ tls_ca_file: v }), headers, signal: AbortSignal.timeout(30_000) });
      const onFifo = await patch(fifo);
      expect(onFifo.status).toBe(400);
      expect(await onFifo.text()).toContain("ca.fifo is not a regular file");
      expect((await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(30_000) })).status).toBe(200);
      const onDevice = await patch("/dev/zero");
      expect(onDevice.status).toBe(400);
      expect(await onDevice.text()).toContain("/dev/zero is not a regular file");
      const onHuge = await patch(huge);
      expect(onHuge.status).toBe(400);
      expect(await onHuge.text()).toContain("more than the 1048576 (1 MiB) a CA file may have");
      expect((await patch(lab.cert)).status).toBe(200);
    } finally {
      served.p.kill("SIGKILL"); // a server stuck reading the FIFO would not handle SIGTERM
      await served.p.exited;
      dir.remove();
    }
  });
});
