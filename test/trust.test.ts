import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { forwardedClient, forwardedScheme } from "../app/auth/access.ts";
import { SignInLimiter } from "../app/auth/sign-in-limit.ts";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { addressMatcher } from "../app/core/cidr.ts";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { migrate } from "../app/config/migrate.ts";
import { MIGRATIONS } from "../app/config/migrations/index.ts";
import { SettingsStore } from "../app/config/store.ts";
import { asAdmin, firstPassword, signIn } from "./support/admin.ts";
import { haveNginx, startNginx, startPlainBunProxy, type Proxy } from "./support/proxy.ts";
import { connect } from "./support/client.ts";
import { startTestServer, tempDir, type TestServer } from "./support/server.ts";
import { bootScript } from "./support/practable.ts";

// Real servers, proxies and subprocesses: more than Bun's 5 s default on a busy machine.
setDefaultTimeout(60_000);

const servers: TestServer[] = [];
const proxies: Proxy[] = [];
afterEach(async () => {
  for (const p of proxies.splice(0)) await p.stop().catch(() => {});
  for (const s of servers.splice(0)) await s.close().catch(() => {});
});
async function server(...args: Parameters<typeof startTestServer>) {
  const s = await startTestServer(...args);
  servers.push(s);
  return s;
}


const plainProxies: [string, (port: number) => Promise<Proxy>][] = [
  ["a Bun proxy process that adds no forwarding headers", startPlainBunProxy],
  ...(haveNginx() ? [["nginx with a plain proxy_pass", (port: number) => startNginx(port)] as [string, (port: number) => Promise<Proxy>]] : []),
];
if (!haveNginx()) {
  // Under CI a missing nginx is a failure (.ci/run installs it), never a quiet pass.
  if (process.env.CI) throw new Error("nginx is not installed (apt-get install nginx-light); .ci/run installs it");
  console.warn("nginx is not installed (apt-get install nginx-light): the nginx cases are left out");
}

describe("a reverse proxy on the box cannot turn the internet into an admin", () => {
  for (const [name, start] of plainProxies) {
    it(`through ${name}: no settings, queries, tokens, Slack or Grafana; the boot script on loopback still works`, async () => {
      const srv = await server();
      const proxy = await start(srv.port);
      proxies.push(proxy);
      const via = (path: string, init: RequestInit = {}) => fetch(`${proxy.url}${path}`, { redirect: "manual", ...init });
      // The proxy works: it is the credentials that are missing.
      expect((await via("/healthz")).status).toBe(200);
      expect((await via("/api/settings", { headers: srv.adminHeaders })).status).toBe(200);

      const attacks: [string, RequestInit][] = [
        ["/api/settings", {}],
        ["/api/settings", { method: "PATCH", body: JSON.stringify({ access: "open", practable_loopback_api: true }) }],
        ["/api/query", { method: "POST", body: JSON.stringify({ sql: "SELECT * FROM messages" }) }],
        ["/grafana/csv?sql=SELECT%201", {}],
        ["/api/slack", { method: "PUT", body: JSON.stringify({ webhook_url: "https://hooks.slack.com/services/T0/B0/x" }) }],
        ["/api/alerts", {}],
        ["/api/destinations/0/reconnect", { method: "POST" }],
        ["/admin/tokens", { method: "POST", body: new URLSearchParams({ prefix: "spin", from: "1", to: "2", kind: "log", access_url: "https://x.example", scopes: "read", ttl: "1d" }), headers: { "Sec-Fetch-Site": "same-origin" } }],
      ];
      for (const [path, init] of attacks) {
        const r = await via(path, init);
        expect(r.status, `${init.method ?? "GET"} ${path}`).toBe(401);
        expect(await r.text()).not.toContain("eyJ"); // no token was minted
      }
      // Token pages need a session: a GET is sent to sign in.
      expect((await via("/admin/tokens")).status).toBe(303);
      // A device token with scopes ["admin"] is no admin token either.
      const device = await signStreamToken(srv.secret, { topic: "*", scopes: ["read", "write", "admin"], ttlSeconds: 60 });
      expect((await via("/api/settings", { headers: { Authorization: `Bearer ${device}` } })).status).toBe(401);
      expect(srv.store.settings.access).toBe("loopback-open");

      // practable's boot script, on the box and straight to the server, works unchanged.
      const boot = await bootScript(srv.port, { spin30Access: "https://relay.example.org/session/spin30-log", spin30Token: "tok.en.x" });
      expect(boot.code).toBe(0);
      expect(JSON.parse(boot.posted)).toMatchObject({ id: "0", stream: "spin30", destination: "https://relay.example.org/session/spin30-log", token: "<redacted>", file: "" });
      expect(Object.keys(JSON.parse(boot.all))).toEqual(["0"]);

      // What stays open to loopback is practable's relay API: through a proxy that hides its clients it is
      // open too, unless the operator turns it off (docs/SECURITY.md); then the boot script needs a token as well.
      expect((await via("/api/destinations/all")).status).toBe(200);
      srv.store.update({ practable_loopback_api: false });
      expect((await via("/api/destinations/all")).status).toBe(401);
      expect((await via("/api/destinations", { method: "POST", body: JSON.stringify({ id: "1", stream: "s", destination: "ws://127.0.0.1:9/x", token: "" }) })).status).toBe(401);
      expect(srv.destinations.get("1")).toBeUndefined();
    });
  }

  it.if(haveNginx())("through nginx that sends X-Forwarded-For, a client is never local: not even practable's API or free streams", async () => {
    const srv = await server();
    const proxy = await startNginx(srv.port, true);
    proxies.push(proxy);
    const via = (path: string, init: RequestInit = {}) => fetch(`${proxy.url}${path}`, { redirect: "manual", ...init });
    expect((await via("/healthz")).status).toBe(200);
    expect((await via("/api/destinations/all")).status).toBe(401);
    expect((await via("/api/destinations", { method: "POST", body: JSON.stringify({ id: "0", stream: "s", destination: "ws://127.0.0.1:9/x", token: "" }) })).status).toBe(401);
    expect((await via("/api/streams")).status).toBe(401);
    expect((await via("/api/streams/s/messages", { method: "POST", body: "x" })).status).toBe(401);
    expect((await via("/api/destinations/all", { headers: srv.adminHeaders })).status).toBe(200);
    // Listing nginx as a trusted proxy does not make what it forwards local.
    srv.store.update({ trusted_proxies: ["127.0.0.1", "::1"] });
    expect((await via("/api/destinations/all")).status).toBe(401);
    expect((await via("/api/settings")).status).toBe(401);
  });
});

describe("sign-in limits", () => {
  it("a blocked client stays blocked while 20,000 other clients come and go, and memory stays bounded", () => {
    const limiter = new SignInLimiter({ perClient: 5, windowMs: 60_000, concurrent: 2, maxClients: 10_000 });
    const now = 1_000_000;
    for (let i = 0; i < 5; i++) {
      const a = limiter.begin("203.0.113.66", now);
      if (!a.ok) throw new Error("the first five attempts must be let through");
      a.done(false);
    }
    expect(limiter.begin("203.0.113.66", now).ok).toBe(false);
    for (let i = 0; i < 20_000; i++) {
      const a = limiter.begin(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, now + 1 + i / 1000);
      if (a.ok) a.done(false);
    }
    expect(limiter.size).toBeLessThanOrEqual(10_000);
    const again = limiter.begin("203.0.113.66", now + 30_000);
    expect(again.ok).toBe(false);
    // Its window ends in its own time, not because of anyone else.
    const later = limiter.begin("203.0.113.66", now + 60_001);
    expect(later.ok).toBe(true);
  });

  it("when every remembered client is blocked, a new one is turned away rather than let in uncounted", () => {
    const limiter = new SignInLimiter({ perClient: 1, windowMs: 60_000, concurrent: 2, maxClients: 3 });
    for (const c of ["a", "b", "c"]) {
      const a = limiter.begin(c, 0);
      if (a.ok) a.done(false);
    }
    const d = limiter.begin("d", 1);
    expect(d).toMatchObject({ ok: false, busy: true });
    expect(limiter.begin("d", 60_001).ok).toBe(true);
  });

  it("rotating X-Forwarded-For, X-Real-IP or Forwarded from loopback gets no extra guesses", async () => {
    const srv = await server();
    const login = (password: string, headers: Record<string, string>) =>
      fetch(`${srv.url}/admin/login`, { method: "POST", redirect: "manual", body: new URLSearchParams({ password }), headers: { Origin: srv.url, ...headers } });
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const ip = `198.51.100.${i}`;
      const headers: Record<string, string> = [{ "X-Forwarded-For": ip }, { "X-Real-IP": ip }, { Forwarded: `for=${ip}` }][i % 3]! as Record<string, string>;
      statuses.push((await login(`wrong-${i}`, headers)).status);
    }
    expect(statuses.filter((s) => s === 401)).toHaveLength(5);
    expect(statuses.slice(5).every((s) => s === 429)).toBe(true);
    // Even the right password waits now: the peer is one client, whatever it claims.
    expect((await login(firstPassword(srv.dataDir), { "X-Forwarded-For": "198.51.100.200" })).status).toBe(429);
  });

  it("believes forwarding headers only from trusted proxies, right to left", () => {
    const trusted = addressMatcher(["127.0.0.1", "10.0.0.0/8"]);
    const req = (h: Record<string, string>) => new Request("http://x/", { headers: h });
    // From a peer that is no trusted proxy, headers are ignored.
    expect(forwardedClient(req({ "X-Forwarded-For": "1.2.3.4" }), "192.0.2.9", trusted)).toBe("192.0.2.9");
    // From a trusted proxy: the right-most untrusted entry (what the client wrote on the left does not count).
    expect(forwardedClient(req({ "X-Forwarded-For": "6.6.6.6, 203.0.113.5, 10.1.1.1" }), "127.0.0.1", trusted)).toBe("203.0.113.5");
    expect(forwardedClient(req({ Forwarded: 'for="[2001:db8::1]:4711", for=10.0.0.2' }), "127.0.0.1", trusted)).toBe("2001:db8::1");
    expect(forwardedClient(req({ "X-Real-IP": "203.0.113.7" }), "::ffff:10.0.0.3", trusted)).toBe("203.0.113.7");
    // Garbage stops the walk at the proxy itself.
    expect(forwardedClient(req({ "X-Forwarded-For": "203.0.113.5, not-an-ip" }), "127.0.0.1", trusted)).toBe("127.0.0.1");
    expect(forwardedClient(req({}), "127.0.0.1", trusted)).toBe("127.0.0.1");
    // The scheme too: only a trusted proxy may say the client used https.
    expect(forwardedScheme(req({ "X-Forwarded-Proto": "https" }), "127.0.0.1", trusted)).toBe("https");
    expect(forwardedScheme(req({ Forwarded: "for=1.2.3.4;proto=https" }), "10.0.0.1", trusted)).toBe("https");
    expect(forwardedScheme(req({ "X-Forwarded-Proto": "https" }), "192.0.2.9", trusted)).toBe("http");
    expect(forwardedScheme(req({ "X-Forwarded-Proto": "gopher" }), "127.0.0.1", trusted)).toBe("http");
  });
});

describe("admin power needs an admin token, never a device token", () => {
  it("the Tokens page offers no 'admin' scope for device ranges and refuses one posted anyway", async () => {
    const srv = await server();
    const admin = asAdmin(srv, await signIn(srv));
    const page = await (await admin.get("/admin/tokens")).text();
    expect(page).toContain('name="scopes" value="read"');
    expect(page).not.toContain('value="admin"');
    const r = await admin.post("/admin/tokens", { prefix: "spin", from: "1", to: "2", kind: "log", access_url: "https://relay.example.org", scopes: ["read", "admin"], ttl: "1d" });
    expect(r.status).toBe(422);
    const html = await r.text();
    expect(html).toContain("allowed: one or more of read, write");
    expect(html).not.toContain("eyJ");
  });
});

describe("the admin's credentials open the stream routes too (every /api/* route)", () => {
  it("under access 'token' an admin token and an admin session read, publish and list; under 'loopback-open' an admin token from loopback reads /metrics", async () => {
    const srv = await server({ access: "token" });
    const bearer = srv.adminHeaders;
    const published = await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", headers: { ...bearer, "content-type": "text/plain" }, body: "from the admin" });
    expect(published.status).toBe(200);
    const recent = await fetch(`${srv.url}/api/streams/spin30/messages`, { headers: bearer });
    expect(recent.status).toBe(200);
    expect(JSON.stringify(await recent.json())).toContain("from the admin");
    const listed = await fetch(`${srv.url}/api/streams`, { headers: bearer });
    expect(listed.status).toBe(200);
    expect(JSON.stringify(await listed.json())).toContain("spin30");
    expect((await fetch(`${srv.url}/api/ingest`, { headers: bearer })).status).toBe(200);
    const metrics = await fetch(`${srv.url}/metrics`, { headers: bearer });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('stream="spin30"');
    const events = await fetch(`${srv.url}/api/events`, { headers: bearer });
    expect(events.status).toBe(200);
    await events.body?.cancel();

    // The browser session, as the admin UI sends it.
    const cookie = { cookie: await signIn(srv) };
    for (const path of ["/api/streams", "/api/streams/spin30/messages", "/api/ingest", "/metrics"]) {
      expect([path, (await fetch(`${srv.url}${path}`, { headers: cookie })).status]).toEqual([path, 200]);
    }

    // Nothing else got in: no credentials, a forged token, a stream token for another stream.
    expect((await fetch(`${srv.url}/api/streams`)).status).toBe(401);
    const forged = await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", headers: { Authorization: "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x" }, body: "x" });
    expect(forged.status).toBe(401);
    const other = await signStreamToken(srv.secret, { topic: "spin31", scopes: ["read", "write"], ttlSeconds: 60 });
    expect((await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", headers: { Authorization: `Bearer ${other}` }, body: "x" })).status).toBe(403);

    const open = await server({ access: "loopback-open" });
    expect((await fetch(`${open.url}/metrics`, { headers: open.adminHeaders })).status).toBe(200);
    expect((await fetch(`${open.url}/api/streams`, { headers: open.adminHeaders })).status).toBe(200);
  });
});

describe("upgrading a box that had api_loopback_admin", () => {
  for (const [old, now] of [["false", false], ["true", true]] as const) {
    it(`api_loopback_admin ${old} becomes practable_loopback_api ${now}, and the old key is gone`, () => {
      const tmp = tempDir();
      try {
        const db = new Database(join(tmp.dir, "switchyard.db"), { create: true });
        migrate(db, MIGRATIONS.filter((m) => m.id < "20261201"));
        db.run("INSERT INTO settings (key, value) VALUES ('api_loopback_admin', ?)", [old]);
        db.close();
        const store = SettingsStore.open(tmp.dir);
        // This upgrade's migration ran (with any later ones).
        expect(store.appliedMigrations[0]).toBe("20261201_120000_practable_loopback");
        expect(store.settings.practable_loopback_api).toBe(now);
        expect(store.db.query("SELECT key FROM settings WHERE key = 'api_loopback_admin'").all()).toEqual([]);
        store.close();
      } finally {
        tmp.remove();
      }
    });
  }
});

describe("a reverse proxy on the same box does not make its clients local", () => {
  it("refuses admin routes and free stream access to requests that came through a proxy", async () => {
    const srv = await server();
    const local = { server: { requestIP: () => ({ address: "127.0.0.1", port: 4000, family: "IPv4" as const }) } };
    expect((await srv.app.request("/api/destinations/all", {}, local)).status).toBe(200);
    for (const h of ["X-Forwarded-For", "X-Real-IP", "Forwarded"]) {
      const r = await srv.app.request("/api/destinations/all", { headers: { [h]: "203.0.113.9" } }, local);
      expect(r.status).toBe(401);
    }
    const proxied = await connect(srv.wsUrl("spin30"), undefined, { "X-Forwarded-For": "203.0.113.9" });
    const closed = await proxied.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain("a token is required");
  });
});
