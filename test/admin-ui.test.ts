import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setAdminPassword } from "../app/auth/admin-account.ts";
import { verifyStreamToken } from "../app/auth/stream-token.ts";
import { SETTING_FIELDS } from "../app/config/settings.ts";
import { ALERT_KEYS, SETTING_GROUPS } from "../app/http/ui/settings-form.ts";
import { asAdmin, firstPassword, formPost, readEvents, signIn } from "./support/admin.ts";
import { startFakeSlack, SECRET_PART } from "./support/fake-slack.ts";
import { freeTcpPort, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

setDefaultTimeout(60_000);

const PAGES = ["/admin", "/admin/destinations", "/admin/tokens", "/admin/query", "/admin/slack", "/admin/settings", "/admin/streams/demo"];
const FRAGMENTS = ["/admin/events/dashboard", "/admin/events/destinations", "/admin/events/stream?name=demo", "/admin/destinations/edit"];

describe("admin UI: sign-in, sessions, CSRF", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s.close());

  test("the first start writes a generated password (0600) and logs it once; a restart keeps it", async () => {
    const file = join(s.dataDir, "initial-admin-password");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const pw = firstPassword(s.dataDir);
    expect(pw).toMatch(/^[a-z0-9]{4}(-[a-z0-9]{4}){4}$/);
    expect(s.logs.filter((l) => l.includes("admin password generated") && l.includes(pw))).toHaveLength(1);
    const again = await startTestServer({}, { dataDir: tempDir().dir });
    try {
      const other = firstPassword(again.dataDir);
      expect(other).not.toBe(pw);
    } finally {
      await again.close();
    }
  });

  test("signed out, every page redirects to sign-in with where to come back, htmx gets HX-Redirect, forms get 401", async () => {
    for (const p of [...PAGES, ...FRAGMENTS]) {
      const r = await s.app.request(p);
      expect(r.status, p).toBe(303);
      expect(r.headers.get("location"), p).toBe(`/admin/login?next=${encodeURIComponent(p)}`);
    }
    const hx = await s.app.request("/admin/destinations", { headers: { "HX-Request": "true" } });
    expect(hx.status).toBe(401);
    expect(hx.headers.get("hx-redirect")).toStartWith("/admin/login?next=");
    const post = await s.app.request("/admin/destinations", formPost({ id: "x", stream: "a", destination: "ws://h/x" }));
    expect(post.status).toBe(401);
    expect(s.destinations.get("x")).toBeUndefined();
    const login = await s.app.request("/admin/login");
    expect(login.status).toBe(200);
    expect(await login.text()).toContain("initial-admin-password");
  });

  test("a wrong password is refused next to the field; the right one sets an HttpOnly SameSite=Strict cookie (Secure over TLS)", async () => {
    const bad = await s.app.request("/admin/login", formPost({ password: "not-the-password", next: "/admin/query" }));
    expect(bad.status).toBe(401);
    const html = await bad.text();
    expect(html).toContain('aria-invalid="true"');
    expect(html).toMatch(/class="field-error" id="password-error"[^>]*>wrong password/);
    expect(bad.headers.get("set-cookie")).toBeNull();

    const ok = await s.app.request("/admin/login", formPost({ password: firstPassword(s.dataDir), next: "/admin/query" }));
    expect(ok.status).toBe(303);
    expect(ok.headers.get("location")).toBe("/admin/query");
    const cookie = ok.headers.get("set-cookie")!;
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Strict");
    expect(cookie).not.toContain("Secure");
    const tls = await s.app.request("/admin/login", formPost({ password: firstPassword(s.dataDir), next: "https://evil.example/" }, { "X-Forwarded-Proto": "https" }));
    expect(tls.headers.get("set-cookie")).toContain("Secure");
    expect(tls.headers.get("location")).toBe("/admin");
  });

  test("sign-in attempts are rate-limited per client, parallel guesses included; only a trusted proxy gets a budget per client it names", async () => {
    const t = await startTestServer();
    try {
      const login = (password: string, headers: Record<string, string> = {}) =>
        fetch(`${t.url}/admin/login`, { method: "POST", redirect: "manual", body: new URLSearchParams({ password }), headers: { Origin: t.url, ...headers } });
      // 20 guesses at once: each counts from its start, and at most 2 hashes run at once.
      const answers = await Promise.all([...Array(20)].map((_, i) => login(`wrong-password-${i}`)));
      const codes = answers.map((r) => r.status);
      expect(codes.filter((c) => c === 429).length).toBeGreaterThanOrEqual(15);
      // However they come, at most 5 wrong passwords a minute are ever checked.
      let checked = codes.filter((c) => c === 401).length;
      for (let i = 0; i < 10; i++) if ((await login(`wrong-again-${i}`)).status === 401) checked++;
      expect(checked).toBe(5);
      const limited = await login(firstPassword(t.dataDir));
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await limited.text()).toMatch(/too many failed sign-ins|other sign-ins are being checked/);
      expect(limited.headers.get("set-cookie")).toBeNull();
      // Rotating X-Forwarded-For from a peer that is not a trusted proxy buys no guesses: the header is not believed.
      for (let i = 0; i < 5; i++) expect((await login("wrong-password", { "X-Forwarded-For": `198.51.100.${i}`, "X-Real-IP": `198.51.100.${i}` })).status).toBe(429);
      // Behind a trusted proxy, each client the proxy names (last X-Forwarded-For entry) has a budget of its own;
      // what a client puts earlier in the header changes nothing.
      t.store.update({ trusted_proxies: ["127.0.0.1", "::1"] });
      for (let i = 0; i < 5; i++) expect((await login("wrong-password", { "X-Forwarded-For": `10.9.9.${i}, 203.0.113.9` })).status).toBe(401);
      expect((await login(firstPassword(t.dataDir), { "X-Forwarded-For": "10.9.9.99, 203.0.113.9" })).status).toBe(429);
      expect((await login(firstPassword(t.dataDir), { "X-Forwarded-For": "203.0.113.10" })).status).toBe(303);
    } finally {
      await t.close();
    }
  });

  test("loopback trust needs a Host DNS cannot rebind and no foreign Origin: rebinding pages and cross-site websockets get nothing free", async () => {
    const t = await startTestServer();
    try {
      const { connect } = await import("./support/client.ts");
      const port = t.port;
      // A DNS-rebinding page: same socket (127.0.0.1), but Host and Origin are the attacker's name.
      const rebound = await fetch(`${t.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ access: "open" }), headers: { Host: `evil.example:${port}`, Origin: `http://evil.example:${port}`, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json" } });
      expect(rebound.status).toBe(401);
      expect(t.store.settings.access).toBe("loopback-open");
      // The same from localhost itself works (practable boot scripts).
      const local = await fetch(`http://localhost:${port}/api/destinations/all`);
      expect(local.status).toBe(200);
      // A page of another site opening a websocket to the box is not a local client.
      const foreign = await connect(`ws://127.0.0.1:${port}/ws/secret`, undefined, { Origin: "http://evil.example" });
      const closed = await foreign.closed;
      expect(closed.code).toBe(1008);
      const own = await connect(`ws://127.0.0.1:${port}/ws/secret`, undefined, { Origin: `http://127.0.0.1:${port}` });
      expect(own.ws.readyState).toBe(WebSocket.OPEN);
      own.close();
      // Cross-site posts to /ts/ are refused too.
      const ts = await fetch(`${t.url}/ts/x`, { method: "POST", body: "x", headers: { Origin: "http://evil.example", "Content-Type": "text/plain" } });
      expect(ts.status).toBe(403);
    } finally {
      await t.close();
    }
  });

  test("CSRF: a form from another site is refused (Origin or Sec-Fetch-Site), and nothing changes", async () => {
    const cookie = await signIn(s);
    const evil = { Origin: "http://evil.example", cookie };
    const r = await s.app.request("/admin/destinations", { ...formPost({ id: "csrf", stream: "a", destination: "ws://h/x" }), headers: { "Content-Type": "application/x-www-form-urlencoded", ...evil } });
    expect(r.status).toBe(403);
    expect(await r.text()).toContain("cross-site request refused");
    expect(s.destinations.get("csrf")).toBeUndefined();
    const site = await s.app.request("/admin/settings", { method: "POST", body: "group=access&access=open", headers: { "Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site", cookie } });
    expect(site.status).toBe(403);
    expect(s.store.settings.access).toBe("loopback-open");
    // Without Origin or Sec-Fetch-Site a form POST is not from a browser page of ours either.
    const bare = await s.app.request("/admin/settings", { method: "POST", body: "group=access&access=open", headers: { "Content-Type": "application/x-www-form-urlencoded", cookie } });
    expect(bare.status).toBe(403);
    // Login CSRF too.
    const login = await s.app.request("/admin/login", { ...formPost({ password: firstPassword(s.dataDir) }), headers: { "Content-Type": "application/x-www-form-urlencoded", Origin: "http://evil.example" } });
    expect(login.status).toBe(403);
    // The API: a browser on another site is refused even with the session cookie; curl (no Origin) is judged by its credentials.
    const api = await s.app.request("/api/destinations", { method: "POST", body: JSON.stringify({ id: "csrf2", stream: "a", destination: "ws://h/x", token: "" }), headers: { "Content-Type": "text/plain", ...evil } });
    expect(api.status).toBe(403);
    expect(s.destinations.get("csrf2")).toBeUndefined();
  });

  test("the API takes the admin session instead of a token; without it (and not on the box) it is 401", async () => {
    const cookie = await signIn(s);
    const rule = JSON.stringify({ id: "via-session", stream: "a", destination: "ws://127.0.0.1:9/x", token: "" });
    const anon = await s.app.request("/api/destinations", { method: "POST", body: rule, headers: { "Content-Type": "application/json" } });
    expect(anon.status).toBe(401);
    expect((await anon.json()).error.message).toContain("sign in at /admin");
    const ok = await s.app.request("/api/destinations", { method: "POST", body: rule, headers: { "Content-Type": "application/json", cookie } });
    expect(ok.status).toBe(200);
    await s.destinations.remove("via-session");
  });

  test("changing the password signs every session out; sign-out drops the cookie", async () => {
    const t = await startTestServer();
    try {
      const cookie = await signIn(t);
      expect((await asAdmin(t, cookie).get("/admin")).status).toBe(200);
      await setAdminPassword(t.store, t.dataDir, "a-new-password-123");
      expect(existsSync(join(t.dataDir, "initial-admin-password"))).toBe(false);
      expect((await asAdmin(t, cookie).get("/admin")).status).toBe(303);
      const fresh = await signIn(t, "a-new-password-123");
      expect((await asAdmin(t, fresh).get("/admin")).status).toBe(200);
      const out = await asAdmin(t, fresh).post("/admin/logout", {});
      expect(out.status).toBe(303);
      expect(out.headers.get("set-cookie")).toMatch(/switchyard_session=;.*Max-Age=0/);
      // Signed out for good: the old cookie no longer works, here or after a restart.
      expect((await asAdmin(t, fresh).get("/admin")).status).toBe(303);
      const { AdminSessions } = await import("../app/auth/admin-session.ts");
      expect(new AdminSessions(t.store).valid(fresh.split("=")[1])).toBe(false);
      // A tampered cookie is no session.
      expect((await asAdmin(t, fresh.slice(0, -2) + "xx").get("/admin")).status).toBe(303);
    } finally {
      await t.close();
    }
  });

  test("assets are served from the package files with long caching when versioned", async () => {
    const page = await (await asAdmin(s, await signIn(s)).get("/admin")).text();
    const src = /src="(\/admin\/assets\/htmx\.min\.js\?v=[a-z0-9]+)"/.exec(page)![1]!;
    const r = await s.app.request(src);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("javascript");
    expect(r.headers.get("cache-control")).toContain("immutable");
    expect(await r.text()).toContain("htmx");
    expect((await s.app.request("/admin/assets/nope.js")).status).toBe(404);
    expect((await s.app.request("/admin/assets/constructor")).status).toBe(404);
    expect((await s.app.request("/admin/assets/__proto__")).status).toBe(404);
    expect(page).not.toMatch(/https?:\/\/(unpkg|cdn)/);
  });
});

describe("admin UI: pages and fragments", () => {
  let s: TestServer;
  let admin: ReturnType<typeof asAdmin>;
  let slack: ReturnType<typeof startFakeSlack>;
  beforeAll(async () => {
    s = await startTestServer();
    admin = asAdmin(s, await signIn(s));
    slack = startFakeSlack();
  });
  afterAll(async () => {
    slack.stop();
    await s.close();
  });

  test("without JavaScript a form answers with a whole page and a way back; admin errors are HTML", async () => {
    const plain = await admin.post("/admin/destinations", { id: "x y", stream: "a", destination: "nope" }, { Referer: "http://localhost/admin/destinations" });
    expect(plain.status).toBe(422);
    const page = await plain.text();
    expect(page).toStartWith("<!DOCTYPE html>");
    expect(page).toContain('<a href="/admin/destinations">← back</a>');
    expect(page).toContain('id="id-error"');
    const hx = await admin.post("/admin/destinations", { id: "x y", stream: "a", destination: "nope" }, { "HX-Request": "true" });
    expect(await hx.text()).toStartWith('<section class="card" id="destination-form">');
    const missing = await admin.get("/admin/nope");
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain("no page /admin/nope");
    const hxMissing = await admin.get("/admin/streams/" + encodeURIComponent("bad name!"), { "HX-Request": "true" });
    expect(await hxMissing.text()).toStartWith('<div class="notice bad"');
  });

  test("every page answers signed in, with the menu and phone viewport", async () => {
    for (const p of PAGES) {
      const r = await admin.get(p);
      expect(r.status, p).toBe(200);
      const html = await r.text();
      expect(html, p).toStartWith("<!DOCTYPE html>");
      expect(html, p).toContain('name="viewport"');
      expect(html, p).toContain('href="/admin/destinations"');
    }
  });

  test("the dashboard shows empty states, then the stream, live over SSE", async () => {
    const empty = await (await admin.get("/admin")).text();
    expect(empty).toContain("No streams yet: send one with");
    expect(empty).toContain("No destinations");
    const live = await admin.get("/admin/events/dashboard");
    expect(live.headers.get("content-type")).toContain("text/event-stream");
    const first = await readEvents(live, /event: alerts/);
    for (const e of ["streams", "udp", "destinations", "disk", "alerts"]) expect(first).toContain(`event: ${e}`);
    s.hub.publish("dash-demo", "hello", "test");
    await waitFor(async () => (await (await admin.get("/admin")).text()).includes('data-stream="dash-demo"'), "the stream on the dashboard");
    const again = await readEvents(await admin.get("/admin/events/dashboard"), /data-stream="dash-demo"/);
    expect(again).toContain('data-stream="dash-demo"');
    expect(again).toContain('<svg class="spark"');
  });

  test("a stream page shows stats, a live tail over SSE, and publishes a test message (errors next to the field)", async () => {
    s.hub.publish("tail", "before", "test");
    await waitFor(() => (s.recent.query("tail", { limit: 1 }) ?? []).length === 1, "the message delivered");
    const page = await (await admin.get("/admin/streams/tail")).text();
    expect(page).toContain("before");
    expect(page).toContain('sse-connect="/admin/events/stream?name=tail"');
    const res = await admin.get("/admin/events/stream?name=tail");
    const reading = readEvents(res, /event: message[\s\S]*during-tail/);
    await Bun.sleep(300);
    s.hub.publish("tail", "during-tail", "test");
    const text = await reading;
    expect(text).toContain("event: stats");
    expect(text).toMatch(/event: message\ndata: [\s\S]*during-tail/);

    const empty = await admin.post("/admin/streams/publish", { stream: "tail", data: "" });
    expect(empty.status).toBe(422);
    expect(await empty.text()).toMatch(/id="data-error"[^>]*>allowed: any text/);
    const ok = await admin.post("/admin/streams/publish", { stream: "tail", data: "from the form" });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toMatch(/published as message #\d+/);
    expect(s.recent.query("tail", { limit: 1 })![0]!.data).toBe("from the form");
    expect(s.hub.stream("tail")!.lastMessageAt).not.toBeNull();
    const bad = await admin.get("/admin/streams/" + encodeURIComponent("bad name!"));
    expect(bad.status).toBe(404);
    expect((await admin.get("/admin/streams/%E0%A4%A")).status).toBe(404);
  });

  test("destinations: bad input shows each error next to its field and adds nothing; add, edit (token kept), reconnect, delete", async () => {
    const bad = await admin.post("/admin/destinations", { id: "bad id!", stream: "spin30", destination: "not a url", token: "", kind: "websocket", batch: "1" });
    expect(bad.status).toBe(422);
    const html = await bad.text();
    expect(html).toMatch(/name="id" value="bad id!"[^>]*aria-invalid="true"/);
    expect(html).toMatch(/id="id-error"[^>]*>&quot;bad id!&quot; is not valid; allowed/);
    expect(html).toMatch(/id="destination-error"[^>]*>&quot;not a url&quot; is not a URL/);
    expect(s.destinations.list()).toHaveLength(0);

    const add = await admin.post("/admin/destinations", { id: "0", stream: "spin30", destination: "http://127.0.0.1:9/session/spin30-log", token: "tok-123", kind: "websocket", batch: "1", file: "" });
    expect(add.status).toBe(200);
    expect(await add.text()).toContain("destination 0 added");
    expect(s.destinations.get("0")!.rule.token).toBe("tok-123");
    const list = await (await admin.get("/admin/destinations")).text();
    expect(list).toContain('data-destination="0"');
    expect(list).not.toContain("tok-123");
    const events = await readEvents(await admin.get("/admin/events/destinations"), /event: destinations/);
    expect(events).toContain('data-destination="0"');

    const edit = await (await admin.get("/admin/destinations/edit?id=0")).text();
    expect(edit).toContain("Edit destination 0");
    expect(edit).not.toContain("tok-123");
    expect(edit).toMatch(/name="id" value="0" readonly/);
    // A bad new rule keeps the token typed (it is the user's own, on their page).
    const typed = await admin.post("/admin/destinations", { id: "1", stream: "spin30", destination: "wss://x", token: "tok-typed", kind: "websocket", batch: "1", file: "" });
    expect(typed.status).toBe(422);
    expect(await typed.text()).toContain('value="tok-typed"');
    const gone = await admin.post("/admin/destinations", { id: "deleted-meanwhile", stream: "a", destination: "ws://h/x", token: "", kind: "websocket", batch: "1", file: "", editing: "1" });
    expect(gone.status).toBe(404);
    expect(s.destinations.get("deleted-meanwhile")).toBeUndefined();
    const saved = await admin.post("/admin/destinations", { id: "0", stream: "spin31", destination: "http://127.0.0.1:9/session/spin31-log", token: "", kind: "websocket", batch: "1", file: "", editing: "1" });
    expect(await saved.text()).toContain("destination 0 replaced");
    expect(s.destinations.get("0")!.rule).toMatchObject({ stream: "spin31", token: "tok-123" });

    const again = await admin.post("/admin/destinations/reconnect", { id: "0" });
    expect(await again.text()).toContain("reconnecting now");
    expect((await admin.post("/admin/destinations/reconnect", { id: "nope" })).status).toBe(404);
    const del = await admin.post("/admin/destinations/delete", { id: "0" });
    expect(await del.text()).toContain("destination 0 deleted");
    expect(s.destinations.get("0")).toBeUndefined();
  });

  test("tokens: a range makes a table, a .tar.gz of the boot scripts' files and JSON; the tokens verify; the range can be added as destinations", async () => {
    const bad = await admin.post("/admin/tokens", { prefix: "spin", from: "41", to: "30", kind: "log", access_url: "ftp://x", scopes: ["read"], ttl: "365d" });
    expect(bad.status).toBe(422);
    const badHtml = await bad.text();
    expect(badHtml).toMatch(/id="to-error"[^>]*>must be at least from \(41\)/);
    expect(badHtml).toMatch(/id="access_url-error"/);
    const names = await (await admin.post("/admin/tokens", { prefix: "spin_", from: "1", to: "2", kind: "x".repeat(41), access_url: "wss://relay.example.org", scopes: ["read"], ttl: "1d" })).text();
    expect(names).toMatch(/id="prefix-error"[^>]*>allowed: 1 to 40 characters A-Z a-z 0-9 -/);
    expect(names).toMatch(/id="kind-error"/);
    expect(names).toMatch(/id="access_url-error"[^>]*>allowed: the relay&#39;s access URL, http:\/\/ or https:\/\//);

    const r = await admin.post("/admin/tokens", { prefix: "spin", from: "30", to: "41", kind: "log", access_url: "https://relay.example.org/access/", scopes: ["read", "write"], ttl: "365d" });
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("no-store");
    const html = await r.text();
    expect(html.match(/data-device="spin\d+"/g)).toHaveLength(12);
    const tgz = /href="data:application\/gzip;base64,([^"]+)"/.exec(html)![1]!;
    const dir = tempDir();
    try {
      writeFileSync(join(dir.dir, "t.tar.gz"), Buffer.from(tgz, "base64"));
      mkdirSync(join(dir.dir, "out"));
      const tar = Bun.spawnSync(["tar", "xzf", join(dir.dir, "t.tar.gz"), "-C", join(dir.dir, "out")]);
      expect(tar.exitCode).toBe(0);
      expect(readFileSync(join(dir.dir, "out", "log.access.spin30"), "utf8")).toBe("https://relay.example.org/access/session/spin30-log\n");
      const token = readFileSync(join(dir.dir, "out", "log.token.spin41"), "utf8").trim();
      const claims = await verifyStreamToken(s.secret, token, "https://relay.example.org/access");
      expect(claims.topic).toBe("spin41-log");
      // In the order practable's relay token writes them, with its default booking id.
      expect(claims.scopes).toEqual(["write", "read"]);
      expect(claims.booking_id).toBe("relay-token-cli");
      expect(claims.exp - claims.iat).toBe(31_536_000);
    } finally {
      dir.remove();
    }
    const json = JSON.parse(Buffer.from(/href="data:application\/json;base64,([^"]+)"/.exec(html)![1]!, "base64").toString());
    expect(json.tokens).toHaveLength(12);
    expect(s.logs.some((l) => l.includes(json.tokens[0].token))).toBe(false);

    const rules = /name="rules" value="([^"]+)"/.exec(html)![1]!.replaceAll("&quot;", '"');
    const added = await admin.post("/admin/tokens/destinations", { rules });
    expect(await added.text()).toContain("12 destination(s) added");
    expect(s.destinations.get("spin30-log")!.rule).toMatchObject({ stream: "spin30", destination: "https://relay.example.org/access/session/spin30-log" });
    await s.destinations.removeAll();
  });

  test("Slack: a bad URL is refused next to the field; a saved URL is shown redacted; the test shows Slack's answer; rules save with errors per field", async () => {
    const bad = await admin.post("/admin/slack/url", { webhook_url: "hooks.slack.com/nope", action: "save" });
    expect(bad.status).toBe(422);
    expect(await bad.text()).toMatch(/id="webhook_url-error"[^>]*>the webhook URL is not a URL/);
    const saved = await admin.post("/admin/slack/url", { webhook_url: slack.url("ok"), action: "save" });
    const html = await saved.text();
    expect(html).toContain("webhook URL saved");
    expect(html).not.toContain(SECRET_PART);
    expect(await (await admin.get("/admin/slack")).text()).not.toContain(SECRET_PART);
    const test1 = await admin.post("/admin/slack/test", {});
    expect(await test1.text()).toContain("Slack answered");
    expect(slack.received.at(-1)!.text).toContain("Test message from Switchyard");
    await admin.post("/admin/slack/url", { webhook_url: slack.url("gone"), action: "save" });
    expect(await (await admin.post("/admin/slack/test", {})).text()).toContain("Slack did not take it (not_found 404)");

    const rulesBad = await admin.post("/admin/slack/rules", { alert_destination_down_seconds: "soon", alert_cooldown_seconds: "60" });
    expect(rulesBad.status).toBe(422);
    expect(await rulesBad.text()).toMatch(/id="alert_destination_down_seconds-error"[^>]*>&quot;soon&quot; is not a whole number/);
    const rulesOk = await admin.post("/admin/slack/rules", { alert_destination_down_seconds: "45", alert_backpressure: "false" });
    expect(await rulesOk.text()).toContain("saved: alert_destination_down_seconds, alert_backpressure");
    expect(s.store.settings.alert_destination_down_seconds).toBe(45);
    const removed = await admin.post("/admin/slack/url", { action: "remove" });
    expect(await removed.text()).toContain("webhook URL removed");
    expect(s.store.getSecret("slack_webhook_url")).toBeNull();
  });

  test("settings: every setting is on a page; bad input keeps what was typed with the error beside it; good input applies live and says when a restart is needed", async () => {
    const shown = [...SETTING_GROUPS.flatMap((g) => g.keys), ...ALERT_KEYS].sort();
    expect(shown as string[]).toEqual(Object.keys(SETTING_FIELDS).sort());
    const page = await (await admin.get("/admin/settings")).text();
    expect(page).toContain("--port");
    const bad = await admin.post("/admin/settings", { group: "hub", max_connections: "lots", keepalive_seconds: "2" });
    expect(bad.status).toBe(422);
    const html = await bad.text();
    expect(html).toMatch(/name="max_connections" value="lots"/);
    expect(html).toMatch(/id="max_connections-error"[^>]*>&quot;lots&quot; is not a whole number/);
    expect(html).toMatch(/id="keepalive_seconds-error"[^>]*>2 is not valid; allowed/);
    const range = await admin.post("/admin/settings", { group: "hub", max_connections: "10", keepalive_seconds: "2" });
    expect(range.status).toBe(422);
    expect(await range.text()).toMatch(/id="keepalive_seconds-error"[^>]*>2 is not valid; allowed/);
    expect(s.store.settings.max_connections).not.toBe(10);
    const ok = await admin.post("/admin/settings", { group: "hub", max_connections: "500", keepalive_seconds: "90" });
    const okHtml = await ok.text();
    expect(okHtml).toContain("saved: max_connections, keepalive_seconds. Restart Switchyard for keepalive_seconds");
    expect(s.store.settings.max_connections).toBe(500);
    const json = await admin.post("/admin/settings", { group: "log", log_exclude: "not json" });
    expect(await json.text()).toMatch(/id="log_exclude-error"[^>]*>not valid JSON/);
    const list = await admin.post("/admin/settings", { group: "log", log_exclude: '["debug*"]' });
    expect(list.status).toBe(200);
    expect(s.store.settings.log_exclude).toEqual(["debug*"]);
    const bool = await admin.post("/admin/settings", { group: "access", practable_loopback_api: ["false"], access: "token", public_url: "" });
    expect(bool.status).toBe(200);
    expect(s.store.settings.practable_loopback_api).toBe(false);
    expect((await admin.post("/admin/settings", { group: "nope" })).status).toBe(400);

    // Ports: saved for the next start (a flag or variable still wins), empty for the default.
    const far = await admin.post("/admin/settings", { group: "ports", http_port: "70000", udp_port: "" });
    expect(far.status).toBe(422);
    expect(await far.text()).toMatch(/id="http_port-error"[^>]*>70000 is not valid; allowed: a port from 1 to 65535/);
    const port = await admin.post("/admin/settings", { group: "ports", http_port: "9555", udp_port: "" });
    expect(await port.text()).toContain("saved: http_port. Restart Switchyard for http_port");
    expect(s.store.settings.http_port).toBe(9555);
    expect(s.store.settings.udp_port).toBeNull();
    const { cli } = await import("./support/cli.ts");
    const check = await cli(["check-config", "--data-dir", s.dataDir]);
    expect(check.stdout).toMatch(/port\s+9555\s+\(settings\)/);
    expect(check.stdout).toMatch(/udpPort\s+8889\s+\(default\)/);
    expect((await cli(["check-config", "--data-dir", s.dataDir, "--port", "9600"])).stdout).toMatch(/port\s+9600\s+\(flag\)/);
    await admin.post("/admin/settings", { group: "ports", http_port: "", udp_port: "" });
    expect(s.store.settings.http_port).toBeNull();
    expect(page).not.toContain("wins over http_port below");
    // Installed as a service, the unit sets SWITCHYARD_PORT: the page says the setting would not apply.
    const svc = await startTestServer({}, { configSources: { port: "env", udpPort: "default" } });
    try {
      const html = await (await asAdmin(svc, await signIn(svc)).get("/admin/settings")).text();
      expect(html).toContain("The HTTP port (SWITCHYARD_PORT or --port) is set where Switchyard is started, which wins over http_port below");
      expect(html).toContain("set by the environment");
    } finally {
      await svc.close();
    }
  });

  test("query: a result as a table with a chart for time series, errors shown, downloads as CSV and Parquet", async () => {
    for (let i = 0; i < 5; i++) {
      s.hub.publish("q", JSON.stringify({ value: i }), "test");
      await Bun.sleep(2); // distinct timestamps: a chart has one point per time
    }
    await s.spool.durable();
    const r = await admin.post("/admin/query", { sql: "SELECT ts, CAST(json_extract(data, '$.value') AS DOUBLE) AS value FROM messages WHERE stream = 'q' ORDER BY ts" });
    expect(r.status).toBe(200);
    const html = await r.text();
    expect(html).toContain("5 row(s)");
    expect(html).toContain("<th>value</th>");
    const chart = JSON.parse(/<script type="application\/json">([^<]+)<\/script>/.exec(html)![1]!);
    expect(chart.time).toBe("ts");
    expect(chart.series[0].label).toBe("value");
    expect(chart.series[0].values).toEqual([0, 1, 2, 3, 4]);
    const noChart = await (await admin.post("/admin/query", { sql: "SELECT stream, count(*) AS n FROM messages GROUP BY stream" })).text();
    expect(noChart).toContain("<th>stream</th>");
    expect(noChart).not.toContain("data-chart");
    const bad = await admin.post("/admin/query", { sql: "SELECT nope FROM messages" });
    expect(bad.status).toBe(422);
    expect(await bad.text()).toMatch(/class="notice bad"[^>]*>query failed: .*nope/);
    const write = await admin.post("/admin/query", { sql: "COPY (SELECT 1) TO '/tmp/x.csv'" });
    expect(await write.text()).toMatch(/class="notice bad"[^>]*>query failed: /);
    const csv = await admin.post("/admin/query/download", { sql: "SELECT seq FROM messages WHERE stream = 'q' ORDER BY seq", format: "csv" });
    expect(csv.headers.get("content-disposition")).toContain("query.csv");
    expect(await csv.text()).toBe("seq\n1\n2\n3\n4\n5\n");
    const pq = await admin.post("/admin/query/download", { sql: "SELECT seq FROM messages WHERE stream = 'q'", format: "parquet" });
    const bytes = new Uint8Array(await pq.arrayBuffer());
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe("PAR1");
    expect((await admin.post("/admin/query/download", { sql: "SELECT 1", format: "xlsx" })).status).toBe(400);
    const { EXAMPLES } = await import("../views/query.tsx");
    for (const e of EXAMPLES) {
      const r = await admin.post("/admin/query", { sql: e.sql });
      expect(r.status, e.title).toBe(200);
      expect(await r.text(), e.title).toContain('id="query-summary"');
    }
  });
});

describe("admin CLI", () => {
  test("switchyard admin password: from stdin (checked) or generated; a running server takes it at once", async () => {
    const { cli, MAIN } = await import("./support/cli.ts");
    const s = await startTestServer();
    try {
      const old = await signIn(s);
      const p = Bun.spawn([process.execPath, MAIN, "admin", "password", "--password-stdin", "--data-dir", s.dataDir], { stdin: new TextEncoder().encode("short\n"), stdout: "pipe", stderr: "pipe" });
      expect(await p.exited).toBe(2);
      expect(await new Response(p.stderr).text()).toContain("at least 10 characters");
      const ok = Bun.spawn([process.execPath, MAIN, "admin", "password", "--password-stdin", "--data-dir", s.dataDir], { stdin: new TextEncoder().encode("correct horse battery\n"), stdout: "pipe", stderr: "pipe" });
      expect(await ok.exited).toBe(0);
      expect(await new Response(ok.stdout).text()).toBe("admin password changed\n");
      expect((await asAdmin(s, old).get("/admin")).status).toBe(303);
      expect((await asAdmin(s, await signIn(s, "correct horse battery")).get("/admin")).status).toBe(200);
      const gen = await cli(["admin", "password", "--data-dir", s.dataDir]);
      expect(gen.code).toBe(0);
      const pw = /shown once\): (\S+)/.exec(gen.stdout)![1]!;
      expect((await asAdmin(s, await signIn(s, pw)).get("/admin")).status).toBe(200);
      expect((await cli(["admin", "reset", "--data-dir", s.dataDir])).stderr).toContain('unknown subcommand "reset"; allowed: password');
    } finally {
      await s.close();
    }
  });

  test("switchyard token --prefix writes the same files as the page (0600), with tokens this box verifies", async () => {
    const { cli } = await import("./support/cli.ts");
    const dir = tempDir();
    try {
      const out = join(dir.dir, "tokens");
      const r = await cli(["token", "--prefix", "spin", "--from", "30", "--to", "41", "--kind", "log", "--access-url", "https://relay.example.org/access", "--out", out, "--data-dir", dir.dir]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split("\n")).toHaveLength(24);
      expect(readFileSync(join(out, "log.access.spin35"), "utf8")).toBe("https://relay.example.org/access/session/spin35-log\n");
      expect(statSync(join(out, "log.token.spin35")).mode & 0o777).toBe(0o600);
      const s = await startTestServer({}, { dataDir: dir.dir });
      try {
        const claims = await verifyStreamToken(s.secret, readFileSync(join(out, "log.token.spin35"), "utf8").trim(), "https://relay.example.org/access");
        expect(claims.topic).toBe("spin35-log");
      } finally {
        await s.close();
      }
      const bad = await cli(["token", "--prefix", "spin", "--from", "5", "--to", "2", "--kind", "log", "--access-url", "nope", "--out", out, "--data-dir", dir.dir]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("--to: must be at least from (5)");
      expect(bad.stderr).toContain("--access-url: allowed:");
    } finally {
      dir.remove();
    }
  });
});

describe("ports saved in the settings", () => {
  test("serve listens on the stored http_port when no flag or variable names one", async () => {
    const { MAIN } = await import("./support/cli.ts");
    const { SettingsStore } = await import("../app/config/store.ts");
    const dir = tempDir();
    const port = freeTcpPort();
    const store = SettingsStore.open(dir.dir);
    store.update({ http_port: port, udp_port: 0 });
    store.close();
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHYARD_")));
    const p = Bun.spawn([process.execPath, MAIN, "serve", "--data-dir", dir.dir, "--host", "127.0.0.1"], { env: clean, stdout: "ignore", stderr: "pipe" });
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null))?.ok === true, `serve on the stored port ${port}`, 15_000);
    } finally {
      p.kill("SIGTERM");
      await p.exited;
      dir.remove();
    }
  });
});
