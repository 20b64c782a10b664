import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "./support/client.ts";
import { asAdmin, signIn } from "./support/admin.ts";
import { freeTcpPort, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";
import { sClient, servedSubject, startPebble, type Pebble } from "./support/tls.ts";

// Real ACME server (pebble) and DNS (pebble-challtestsrv) as subprocesses, real orders: give them time on a busy machine.
setDefaultTimeout(240_000);

const DOMAIN = "box.switchyard.test";

/** The serial and end date of the certificate served on `port` for DOMAIN. */
async function served(port: number): Promise<string> {
  const p = Bun.spawn(["sh", "-c", `openssl s_client -connect 127.0.0.1:${port} -servername ${DOMAIN} </dev/null 2>/dev/null | openssl x509 -noout -serial -subject 2>/dev/null`], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  return out.trim();
}

describe("ACME against pebble: issuance by HTTP-01, restart, failed order", () => {
  const tmp = tempDir("switchyard-acme-");
  const redirectPort = freeTcpPort();
  let pebble: Pebble;
  let rootFile: string;
  const data = tempDir("switchyard-acme-data-");
  beforeAll(async () => {
    pebble = await startPebble(tmp.dir, { httpPort: redirectPort, validitySeconds: 3600 });
    rootFile = join(tmp.dir, "pebble-root.pem");
    writeFileSync(rootFile, await pebble.root());
  });
  afterAll(async () => {
    await pebble?.stop();
    tmp.remove();
    data.remove();
  });
  const start = (dataDir = data.dir) => startTestServer({}, {
    dataDir, acmeRetryMs: 500,
    tls: { acmeDomains: [DOMAIN], acmeEmail: "ops@switchyard.test", acmeDirectory: pebble.directory, acmeCaFile: pebble.listenerCa, redirectPort },
  });

  let firstSerial = "";
  it("gets a certificate at start, answering HTTP-01 itself, and keeps the keys in the data dir (0600)", async () => {
    const srv = await start();
    try {
      const s = await sClient(srv.port, rootFile, DOMAIN);
      expect(s.out).toContain("Verify return code: 0 (ok)");
      expect(s.code).toBe(0);
      firstSerial = await served(srv.port);
      expect(firstSerial).toContain(`CN = ${DOMAIN}`);
      const state = srv.tls!.state();
      expect(state.mode).toBe("acme");
      expect(state.names).toEqual([DOMAIN]);
      expect(state.acme!.orders).toBe(1);
      expect(state.issuer).toContain("Pebble Intermediate CA");
      for (const f of ["account.key", "certificate.key", "certificate.pem"]) expect(statSync(join(data.dir, "tls", f)).mode & 0o777).toBe(0o600);
      expect(statSync(join(data.dir, "tls")).mode & 0o777).toBe(0o700);
      // Plain HTTP on the challenge port redirects to HTTPS.
      const r = await fetch(`http://127.0.0.1:${redirectPort}/admin`, { redirect: "manual", headers: { Host: DOMAIN } });
      expect(r.status).toBe(308);
      expect(r.headers.get("location")).toBe(`https://${DOMAIN}:${srv.port}/admin`);
    } finally {
      await srv.close();
    }
  });

  it("restarts with the stored certificate and places no new order", async () => {
    const srv = await start();
    try {
      expect(srv.tls!.state().acme!.orders).toBe(0);
      expect(await served(srv.port)).toBe(firstSerial);
    } finally {
      await srv.close();
    }
  });

  it("a failed order says why, raises the alert and keeps the old certificate; the retry then succeeds", async () => {
    const srv = await start();
    try {
      // pebble's DNS now sends validation to an address where nothing answers: the CA cannot reach the challenge.
      await pebble.setAddress(DOMAIN, ["127.0.0.2"]);
      const renewal = srv.tls!.renewNow();
      await waitFor(() => srv.tls!.state().lastError !== null, "the order to fail", 90_000).catch((e) => {
        throw new Error(`${e.message}; state: ${JSON.stringify(srv.tls!.state())}; log: ${srv.logs.filter((l) => l.includes("tls")).join("")}`);
      });
      await renewal;
      const error = srv.tls!.state().lastError!;
      expect(error).toContain(`ACME order for ${DOMAIN} at ${pebble.directory} failed`);
      expect(error).toMatch(/connection refused|connect/i);
      expect(srv.alerts.snapshot().firing.map((a) => a.rule)).toContain("tls_certificate");
      expect(await served(srv.port)).toBe(firstSerial);
      // The dashboard shows the failure beside the expiry date of the certificate still served.
      const dashboard = await (await asAdmin(srv, await signIn(srv)).get("/admin")).text();
      expect(dashboard).toContain(`expires ${srv.tls!.state().notAfter.slice(0, 10)}`);
      expect(dashboard).toContain("connection refused");
      // The CA can reach the box again: the back-off retry gets a new certificate, served without a restart.
      await pebble.clearAddress(DOMAIN);
      await waitFor(async () => (await served(srv.port)) !== firstSerial, "the retried order to be served", 60_000).catch((e) => {
        throw new Error(`${e.message}; log: ${srv.logs.filter((l) => l.includes("tls")).join("")}`);
      });
      expect(srv.tls!.state().lastError).toBeNull();
      expect(srv.alerts.snapshot().firing.map((a) => a.rule)).not.toContain("tls_certificate");
    } finally {
      await srv.close();
    }
  });

  it("refuses to start with a clear error when the first order fails", async () => {
    const fresh = tempDir();
    await pebble.setAddress(DOMAIN, ["127.0.0.2"]);
    try {
      await expect(start(fresh.dir)).rejects.toThrow(new RegExp(`ACME order for ${DOMAIN.replace(/\./g, "\\.")} at .* failed: .*`));
    } finally {
      await pebble.clearAddress(DOMAIN);
      fresh.remove();
    }
  });

  it("says the directory is not trusted without --acme-ca-file", async () => {
    const fresh = tempDir();
    try {
      await expect(startTestServer({}, { dataDir: fresh.dir, tls: { acmeDomains: [DOMAIN], acmeDirectory: pebble.directory, redirectPort } }))
        .rejects.toThrow(/HTTPS certificate is not trusted .*--acme-ca-file/);
    } finally {
      fresh.remove();
    }
  });
});

describe("ACME renewal of short-lived certificates", () => {
  const tmp = tempDir("switchyard-acme-renew-");
  const redirectPort = freeTcpPort();
  let pebble: Pebble;
  let srv: TestServer | null = null;
  beforeAll(async () => {
    pebble = await startPebble(tmp.dir, { httpPort: redirectPort, validitySeconds: 12 });
  });
  afterAll(async () => {
    await srv?.close();
    await pebble?.stop();
    tmp.remove();
  });

  it("renews when a third of the lifetime is left, serving the new certificate under a connected wss:// client", async () => {
    srv = await startTestServer({}, { acmeRetryMs: 500, tls: { acmeDomains: [DOMAIN], acmeDirectory: pebble.directory, acmeCaFile: pebble.listenerCa, redirectPort } });
    const first = await served(srv.port);
    const state = srv.tls!.state();
    const lifetime = Date.parse(state.notAfter) - Date.parse(state.notBefore);
    expect(Date.parse(state.acme!.nextRenewalAt!)).toBe(Math.floor(Date.parse(state.notBefore) + (lifetime * 2) / 3));
    // The name does not resolve outside pebble's DNS, so this client dials 127.0.0.1 and skips the name check
    // (the chain is verified with openssl above and in the first group); what it shows is that it stays connected.
    const sub = await connect(`wss://127.0.0.1:${srv.port}/ws/renew`, undefined, undefined, { rejectUnauthorized: false });
    const pub = await connect(`wss://127.0.0.1:${srv.port}/ws/renew`, undefined, undefined, { rejectUnauthorized: false });
    expect(sub.ws.readyState).toBe(WebSocket.OPEN);
    await waitFor(async () => (await served(srv!.port)) !== first, "a renewed certificate", 60_000).catch((e) => {
      throw new Error(`${e.message}; log: ${srv!.logs.filter((l) => l.includes("tls")).join("")}`);
    });
    expect(srv.tls!.state().acme!.orders).toBeGreaterThanOrEqual(2);
    expect(sub.ws.readyState).toBe(WebSocket.OPEN);
    pub.ws.send("after renewal");
    expect(await sub.received(1)).toEqual(["after renewal"]);
    sub.close();
    pub.close();
    expect(await servedSubject(srv.port, DOMAIN)).toContain(`CN = ${DOMAIN}`);
  });
});
