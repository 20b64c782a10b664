import { afterAll, afterEach, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { copyFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type TestClient } from "./support/client.ts";
import { freeTcpPort, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";
import { makeCa, makeIntermediate, makeLeaf, sClient, servedSubject, type TestCa } from "./support/tls.ts";
import { firstPassword } from "./support/admin.ts";
import { resolveStartupConfig } from "../app/config/startup.ts";
import { redirectPortOf } from "../app/tls/startup.ts";

// Real servers, openssl subprocesses and file watching: more than Bun's 5 s default on a busy machine.
setDefaultTimeout(60_000);

const tmp = tempDir("switchyard-tls-files-");
let root: TestCa;
let inter: TestCa;
let rootPem: string;
beforeAll(async () => {
  root = makeCa(tmp.dir, "root");
  inter = makeIntermediate(tmp.dir, "intermediate", root);
  rootPem = await Bun.file(root.cert).text();
});
afterAll(() => tmp.remove());

/** A fresh folder with cert.pem and key.pem: leaf `name` signed through the intermediate. */
function certFolder(name: string): { dir: string; cert: string; key: string } {
  const dir = join(tmp.dir, name);
  Bun.spawnSync(["mkdir", "-p", dir]);
  const leaf = makeLeaf(dir, name, root, { intermediate: inter });
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  copyFileSync(leaf.cert, cert);
  copyFileSync(leaf.key, key);
  return { dir, cert, key };
}

/** Replaces `into`'s cert.pem and key.pem by `from`'s, each by rename as certbot-like tools do. */
function replacePair(from: { cert: string; key: string }, into: { dir: string; cert: string; key: string }): void {
  copyFileSync(from.key, join(into.dir, "key.new"));
  copyFileSync(from.cert, join(into.dir, "cert.new"));
  renameSync(join(into.dir, "key.new"), into.key);
  renameSync(join(into.dir, "cert.new"), into.cert);
}

describe("HTTPS from certificate files", () => {
  let srv: TestServer | null = null;
  const clients: TestClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await srv?.close();
    srv = null;
  });

  it("serves HTTPS and wss:// with the chain, which openssl s_client verifies against the root", async () => {
    const files = certFolder("served");
    srv = await startTestServer({}, { tls: { tlsCert: files.cert, tlsKey: files.key } });
    const s = await sClient(srv.port, root.cert);
    expect(s.out).toContain("Verify return code: 0 (ok)");
    expect(s.code).toBe(0);
    // The intermediate goes out with the leaf: the client has only the root.
    expect(s.out).toContain("CN = intermediate");
    const health = await fetch(`https://localhost:${srv.port}/healthz`, { tls: { ca: rootPem } });
    expect(health.status).toBe(200);
    expect(srv.url).toStartWith("https://");
    const a = await connect(srv.wsUrl("spin30"), undefined, undefined, { ca: rootPem });
    const b = await connect(srv.wsUrl("spin30"), undefined, undefined, { ca: rootPem });
    clients.push(a, b);
    a.ws.send("over tls");
    expect(await b.received(1)).toEqual(["over tls"]);
  });

  it("openssl s_client refuses the chain when it does not trust the root", async () => {
    const files = certFolder("untrusted");
    srv = await startTestServer({}, { tls: { tlsCert: files.cert, tlsKey: files.key } });
    const other = makeCa(tmp.dir, "other");
    const s = await sClient(srv.port, other.cert);
    expect(s.code).not.toBe(0);
    expect(s.out).toMatch(/unable to get local issuer certificate|verify error/);
  });

  it("rotates to new files under a connected wss:// client, which stays connected and keeps receiving", async () => {
    const files = certFolder("rotating");
    const next = certFolder("rotated");
    srv = await startTestServer({}, { tls: { tlsCert: files.cert, tlsKey: files.key } });
    expect(await servedSubject(srv.port)).toContain("CN = rotating");
    const before = await connect(srv.wsUrl("rot"), undefined, undefined, { ca: rootPem });
    clients.push(before);
    replacePair(next, files);
    await waitFor(async () => (await servedSubject(srv!.port)).includes("CN = rotated"), "the new certificate to be served", 20_000);
    expect(srv.tls!.state().subject).toContain("rotated");
    expect(before.ws.readyState).toBe(WebSocket.OPEN);
    // A client on the new certificate and the one from before still reach each other, both ways.
    const after = await connect(srv.wsUrl("rot"), undefined, undefined, { ca: rootPem });
    clients.push(after);
    after.ws.send("from the new listener");
    expect(await before.received(1)).toEqual(["from the new listener"]);
    before.ws.send("from the old listener");
    expect(await after.received(1)).toEqual(["from the old listener"]);
    const http = await fetch(`https://localhost:${srv.port}/healthz`, { tls: { ca: rootPem } });
    expect(http.status).toBe(200);
    // Once the old client leaves, the old listener is let go.
    before.close();
    await waitFor(() => (srv!.tls as unknown as { listener: { retiredCount: number } }).listener.retiredCount === 0, "the old listener to stop", 20_000);
  });

  it("keeps serving the old certificate when the new files do not match, and says why", async () => {
    const files = certFolder("keeps");
    const other = certFolder("stranger");
    srv = await startTestServer({}, { tls: { tlsCert: files.cert, tlsKey: files.key } });
    copyFileSync(other.key, join(files.dir, "key.new"));
    renameSync(join(files.dir, "key.new"), files.key);
    await waitFor(() => srv!.tls!.state().lastError !== null, "the reload to fail", 20_000);
    expect(srv.tls!.state().lastError).toContain("does not belong to the certificate");
    expect(await servedSubject(srv.port)).toContain("CN = keeps");
    expect(srv.alerts.snapshot().firing.map((a) => a.rule)).toContain("tls_certificate");
  });

  it("refuses to start with a key that does not belong to the certificate, a missing file, or an expired certificate", async () => {
    const a = certFolder("pair-a");
    const b = certFolder("pair-b");
    const expired = makeLeaf(tmp.dir, "expired", root, { notBefore: "20200101000000Z", notAfter: "20200201000000Z" });
    const notYet = makeLeaf(tmp.dir, "future", root, { notBefore: "20990101000000Z", notAfter: "20991231000000Z" });
    await expect(startTestServer({}, { tls: { tlsCert: a.cert, tlsKey: b.key } })).rejects.toThrow(/TLS key .*pair-b\/key.pem does not belong to the certificate in TLS certificate .*pair-a\/cert.pem/);
    await expect(startTestServer({}, { tls: { tlsCert: join(tmp.dir, "nope.pem"), tlsKey: a.key } })).rejects.toThrow(/nope.pem: cannot be read: no such file/);
    await expect(startTestServer({}, { tls: { tlsCert: expired.cert, tlsKey: expired.key } })).rejects.toThrow(/expired on 2020-02-01/);
    await expect(startTestServer({}, { tls: { tlsCert: notYet.cert, tlsKey: notYet.key } })).rejects.toThrow(/not valid before 2099-01-01/);
    writeFileSync(join(tmp.dir, "garbage.pem"), "hello\n");
    await expect(startTestServer({}, { tls: { tlsCert: join(tmp.dir, "garbage.pem"), tlsKey: a.key } })).rejects.toThrow(/not a PEM file/);
  });

  it("redirects plain HTTP to HTTPS on the redirect port, and sends HSTS when set", async () => {
    const files = certFolder("redirect");
    const redirectPort = freeTcpPort();
    srv = await startTestServer({ hsts_seconds: 3600 }, { tls: { tlsCert: files.cert, tlsKey: files.key, redirectPort } });
    const r = await fetch(`http://127.0.0.1:${redirectPort}/admin/login?next=%2Fadmin`, { redirect: "manual", headers: { Host: "relay.example.org" } });
    expect(r.status).toBe(308);
    expect(r.headers.get("location")).toBe(`https://relay.example.org:${srv.port}/admin/login?next=%2Fadmin`);
    // The ACME challenge path is not redirected (and with no order open, there is nothing to answer).
    const ch = await fetch(`http://127.0.0.1:${redirectPort}/.well-known/acme-challenge/abc`, { redirect: "manual" });
    expect(ch.status).toBe(404);
    const https = await fetch(`https://localhost:${srv.port}/healthz`, { tls: { ca: rootPem } });
    expect(https.headers.get("strict-transport-security")).toBe("max-age=3600");
  });

  it("answers a bad Host or an HTTP/1.0 request without Host on the redirect port with a plain 400, never Bun's error page", async () => {
    const files = certFolder("redirect-bad");
    const redirectPort = freeTcpPort();
    srv = await startTestServer({}, { tls: { tlsCert: files.cert, tlsKey: files.key, redirectPort } });
    const { connect: tcp } = await import("node:net");
    /** Sends raw bytes and reads until the server closes (Connection: close, or HTTP/1.0). */
    const raw = (text: string) => new Promise<string>((resolve, reject) => {
      const s = tcp(redirectPort, "127.0.0.1");
      let out = "";
      s.on("data", (d) => (out += d));
      s.on("end", () => resolve(out));
      s.on("error", reject);
      s.setTimeout(30_000, () => { s.destroy(); resolve(out); });
      s.write(text);
    });
    for (const request of ["GET /x HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n", "GET /x HTTP/1.0\r\n\r\n"]) {
      const answer = await raw(request);
      const [head, body] = answer.split("\r\n\r\n");
      expect(head).toStartWith("HTTP/1.1 400");
      expect(head!.toLowerCase()).toContain("content-type: text/plain");
      expect(body).toContain("a valid Host header is needed to redirect to HTTPS");
      expect(answer).not.toContain("<html");
      expect(answer).not.toContain("redirect.ts");
    }
    // A good Host is still redirected.
    expect((await fetch(`http://127.0.0.1:${redirectPort}/x`, { redirect: "manual" })).status).toBe(308);
  });

  it("sets the admin session cookie Secure over HTTPS", async () => {
    const files = certFolder("cookie");
    srv = await startTestServer({}, { tls: { tlsCert: files.cert, tlsKey: files.key } });
    const origin = `https://localhost:${srv.port}`;
    const r = await fetch(`${origin}/admin/login`, {
      method: "POST", redirect: "manual", tls: { ca: rootPem },
      headers: { "Content-Type": "application/x-www-form-urlencoded", Origin: origin },
      body: new URLSearchParams({ password: firstPassword(srv.dataDir), next: "/admin" }),
    });
    expect(r.status).toBe(303);
    expect(r.headers.get("set-cookie")).toMatch(/;\s*Secure/i);
  });
});

describe("switchyard serve with certificate files (subprocess)", () => {
  it("exits at start with a clear error for a mismatched key", async () => {
    const a = certFolder("cli-a");
    const b = certFolder("cli-b");
    const data = tempDir();
    try {
      const p = Bun.spawn(["bun", "app/main.ts", "serve", "--data-dir", data.dir, "--host", "127.0.0.1", "--port", "0", "--udp-port", "0", "--tls-cert", a.cert, "--tls-key", b.key],
        { stdout: "pipe", stderr: "pipe", env: { ...process.env, SWITCHYARD_LOG_LEVEL: "info" } });
      const code = await p.exited;
      const err = await new Response(p.stderr).text();
      expect(code).toBe(1);
      expect(err).toContain("does not belong to the certificate");
    } finally {
      data.remove();
    }
  });

  it("re-reads the files on SIGHUP (a change the folder watch cannot see) and keeps running", async () => {
    const live = join(tmp.dir, "live");
    Bun.spawnSync(["mkdir", "-p", live]);
    const first = certFolder("hup-first");
    const second = certFolder("hup-second");
    // The served paths are symlinks into another folder: rewriting the targets in place is invisible to the watch on `live`.
    const store = certFolder("hup-store");
    copyFileSync(first.cert, store.cert);
    copyFileSync(first.key, store.key);
    symlinkSync(store.cert, join(live, "cert.pem"));
    symlinkSync(store.key, join(live, "key.pem"));
    const data = tempDir();
    const port = freeTcpPort();
    const p = Bun.spawn(["bun", "app/main.ts", "serve", "--data-dir", data.dir, "--host", "127.0.0.1", "--port", String(port), "--udp-port", "0", "--tls-cert", join(live, "cert.pem"), "--tls-key", join(live, "key.pem")],
      { stdout: "pipe", stderr: "pipe" });
    try {
      await waitFor(async () => (await servedSubject(port)).includes("CN = hup-first"), "the server to serve the first certificate", 30_000);
      writeFileSync(store.key, await Bun.file(second.key).text());
      writeFileSync(store.cert, await Bun.file(second.cert).text());
      p.kill("SIGHUP");
      await waitFor(async () => (await servedSubject(port)).includes("CN = hup-second"), "SIGHUP to load the second certificate", 30_000);
      expect(p.exitCode).toBeNull();
    } finally {
      p.kill("SIGTERM");
      await p.exited;
      data.remove();
    }
  });
});

describe("TLS startup flags", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["a certificate without its key", { "tls-cert": "/c.pem" }, /--tls-cert and --tls-key go together/],
    ["files and ACME at once", { "tls-cert": "/c.pem", "tls-key": "/k.pem", "acme-domain": ["relay.example.org"] }, /exclude each other/],
    ["a wildcard name", { "acme-domain": ["*.example.org"] }, /wildcards need DNS-01/],
    ["a name that is not one", { "acme-domain": ["relay example"] }, /is not a domain name/],
    ["an ACME directory over plain HTTP", { "acme-domain": ["relay.example.org"], "acme-directory": "http://ca.lab/dir" }, /allowed: an https:\/\/ URL, production or staging/],
    ["an email that is not one", { "acme-domain": ["relay.example.org"], "acme-email": "ops" }, /is not an email address/],
    ["ACME options without a domain", { "acme-email": "ops@example.org" }, /need --acme-domain/],
    ["a redirect port without TLS", { "redirect-port": "8080" }, /--redirect-port needs TLS/],
    ["the redirect port on the HTTPS port", { "acme-domain": ["relay.example.org"], port: "80" }, /--redirect-port 80 is also the HTTPS port/],
  ];
  for (const [name, flags, error] of cases) {
    it(`refuses ${name}`, () => {
      expect(() => resolveStartupConfig(flags, {})).toThrow(error);
    });
  }

  it("takes staging as Let's Encrypt's staging directory and defaults the redirect port to 80 with ACME", () => {
    const { config } = resolveStartupConfig({ "acme-domain": ["Relay.Example.org,lab.example.org"], "acme-directory": "staging", port: "443" }, {});
    expect(config.acmeDomains).toEqual(["relay.example.org", "lab.example.org"]);
    expect(config.acmeDirectory).toBe("https://acme-staging-v02.api.letsencrypt.org/directory");
    expect(redirectPortOf(config)).toBe(80);
  });
});

describe("switchyard check-config with certificate files", () => {
  it("checks the pair as serve does: exit 2 with the reason for a mismatched key, the certificate described otherwise", async () => {
    const a = certFolder("check-a");
    const b = certFolder("check-b");
    const data = tempDir();
    try {
      const run = (key: string) => Bun.spawnSync(["bun", "app/main.ts", "check-config", "--data-dir", data.dir, "--tls-cert", a.cert, "--tls-key", key], { stdout: "pipe", stderr: "pipe" });
      const bad = run(b.key);
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr.toString()).toContain("does not belong to the certificate");
      const good = run(a.key);
      expect(good.exitCode).toBe(0);
      expect(good.stdout.toString()).toMatch(/tls certificate: CN=check-a \(localhost, 127\.0\.0\.1\), valid until \d{4}-/);
    } finally {
      data.remove();
    }
  });
});

describe("switchyard settings set against a server on HTTPS", () => {
  it("applies the change live over TLS, checking the certificate for its name while dialing loopback", async () => {
    const files = certFolder("cli-live");
    const data = tempDir();
    const port = freeTcpPort();
    const p = Bun.spawn(["bun", "app/main.ts", "serve", "--data-dir", data.dir, "--host", "127.0.0.1", "--port", String(port), "--udp-port", "0", "--tls-cert", files.cert, "--tls-key", files.key],
      { stdout: "ignore", stderr: "pipe" });
    try {
      await waitFor(async () => (await servedSubject(port)).includes("CN = cli-live"), "the TLS server", 30_000);
      await waitFor(async () => (await Bun.file(join(data.dir, "server.json")).exists()), "the server file", 30_000);
      expect(JSON.parse(await Bun.file(join(data.dir, "server.json")).text())).toMatchObject({ url: `https://127.0.0.1:${port}`, tlsName: "localhost" });
      // The CLI trusts the lab's root as an operator's machine would (the system store, here through NODE_EXTRA_CA_CERTS).
      const set = Bun.spawnSync(["bun", "app/main.ts", "settings", "set", "stream_linger_seconds", "7", "--data-dir", data.dir],
        { stdout: "pipe", stderr: "pipe", env: { ...process.env, NODE_EXTRA_CA_CERTS: root.cert } });
      expect(set.stderr.toString()).toBe("");
      expect(set.stdout.toString()).toContain(`stream_linger_seconds = 7 (applied to the running server at https://127.0.0.1:${port})`);
      const r = await fetch(`https://localhost:${port}/healthz`, { tls: { ca: rootPem } });
      expect(r.status).toBe(200);
    } finally {
      p.kill("SIGTERM");
      await p.exited;
      data.remove();
    }
  });
});
