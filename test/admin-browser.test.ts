import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { verifyStreamToken } from "../app/auth/stream-token.ts";
import { firstPassword } from "./support/admin.ts";
import { launchBrowser, signedIn } from "./support/browser.ts";
import { startFakeSlack, SECRET_PART } from "./support/fake-slack.ts";
import { startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

setDefaultTimeout(60_000);

// Screenshots go to SWITCHYARD_SCREENSHOTS (docs/screenshots when refreshing the README's), else a temp dir.
const shots = tempDir("switchyard-shots-");
const SHOTS = process.env.SWITCHYARD_SCREENSHOTS ?? shots.dir;
mkdirSync(SHOTS, { recursive: true });
const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

describe("admin UI in Chromium", () => {
  let s: TestServer;
  let browser: Browser;
  let closeBrowser: () => Promise<void>;
  let page: Page;
  let slack: ReturnType<typeof startFakeSlack>;

  beforeAll(async () => {
    s = await startTestServer({}, {});
    slack = startFakeSlack();
    const b = await launchBrowser();
    browser = b.browser;
    closeBrowser = b.close;
  });
  afterAll(async () => {
    await closeBrowser?.();
    slack?.stop();
    await s?.close();
    shots.remove();
  });

  test("sign in: a wrong password is shown next to the field, the right one opens the dashboard", async () => {
    const context = await browser.newContext({ baseURL: s.url, viewport: { width: 1280, height: 800 } });
    const p = await context.newPage();
    await p.goto("/admin/destinations");
    expect(p.url()).toContain("/admin/login?next=%2Fadmin%2Fdestinations");
    await shot(p, "login");
    await p.fill("input[name=password]", "wrong-password-1");
    await p.click("button[type=submit]");
    await p.waitForSelector("#password-error");
    expect(await p.textContent("#password-error")).toContain("wrong password");
    await p.fill("input[name=password]", firstPassword(s.dataDir));
    await Promise.all([p.waitForURL("**/admin/destinations"), p.click("button[type=submit]")]);
    expect(await p.textContent("h1")).toBe("Destinations");
    await context.close();
    page = (await signedIn(browser, s.url, firstPassword(s.dataDir))).page;
    expect(await page.textContent("h1")).toBe("Dashboard");
    expect(await page.textContent("#streams")).toContain("No streams yet");
  });

  test("the dashboard's rate for a stream rises while a websocket publisher runs and falls when it stops", async () => {
    const ws = new WebSocket(s.wsUrl("rate-demo"));
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    let n = 0;
    const timer = setInterval(() => ws.send(JSON.stringify({ value: Math.sin(n++ / 10) })), 20);
    try {
      const rate = page.locator('tr[data-stream="rate-demo"] [data-rate]');
      await rate.waitFor({ timeout: 10_000 });
      await waitFor(async () => Number(await rate.textContent()) >= 20, "the rate shown to climb past 20/s", 15_000);
      await Bun.sleep(2500);
      await shot(page, "dashboard");
      // The page never reloaded: the figures came over server-sent events.
      expect(await page.evaluate("performance.getEntriesByType('navigation').length")).toBe(1);
    } finally {
      clearInterval(timer);
      ws.close();
    }
    const rate = page.locator('tr[data-stream="rate-demo"] [data-rate]');
    await waitFor(async () => Number(await rate.textContent()) === 0, "the rate shown to fall to 0", 15_000);
  });

  test("a stream page tails live, pauses, and publishes a test message", async () => {
    const ws = new WebSocket(s.wsUrl("rate-demo"));
    await new Promise((resolve) => (ws.onopen = resolve));
    let n = 0;
    const timer = setInterval(() => ws.send(`tick ${n++}`), 50);
    try {
      await page.goto("/admin/streams/rate-demo");
      await waitFor(async () => (await page.locator("#tail [data-seq]").count()) > 5, "messages in the tail", 10_000);
      await shot(page, "stream");
      await page.click("button[data-pause-for=tail]");
      const top = await page.locator("#tail [data-seq]").first().getAttribute("data-seq");
      await Bun.sleep(1200);
      expect(await page.locator("#tail [data-seq]").first().getAttribute("data-seq")).toBe(top);
      expect(await page.textContent("#tail-note")).toContain("paused");
      await page.click("button[data-pause-for=tail]");
      await waitFor(async () => (await page.locator("#tail [data-seq]").first().getAttribute("data-seq")) !== top, "the tail to move again", 5000);
    } finally {
      clearInterval(timer);
      ws.close();
    }
    await page.fill("#publish textarea[name=data]", "hello from the browser");
    await page.click("#publish button[type=submit]");
    await page.waitForSelector("#publish .notice.ok");
    expect(await page.textContent("#publish .notice.ok")).toMatch(/published as message #\d+/);
    await waitFor(async () => (await page.textContent("#tail"))!.includes("hello from the browser"), "the message in the tail", 5000);
  });

  test("destinations: a bad rule shows its errors by the fields; a good one appears live; delete removes it", async () => {
    await page.goto("/admin/destinations");
    await page.fill("#destination-form input[name=id]", "bad id!");
    await page.fill("#destination-form input[name=stream]", "spin30");
    await page.fill("#destination-form input[name=destination]", "not a url");
    await page.click("#destination-form button[type=submit]");
    await page.waitForSelector("#id-error");
    expect(await page.textContent("#destination-error")).toContain("is not a URL");
    await page.fill("#destination-form input[name=id]", "spin30-log");
    await page.fill("#destination-form input[name=destination]", "ws://127.0.0.1:9/nowhere");
    await page.click("#destination-form button[type=submit]");
    await page.waitForSelector("text=destination spin30-log added");
    const row = page.locator('tr[data-destination="spin30-log"]');
    await row.waitFor({ timeout: 10_000 });
    await waitFor(async () => /backing-off|connecting|error/.test((await row.textContent()) ?? ""), "the state shown", 10_000);
    await shot(page, "destinations");
    expect(s.destinations.get("spin30-log")).toBeDefined();
    page.once("dialog", (d) => d.accept());
    await row.locator("button.danger").click();
    await page.waitForSelector("text=destination spin30-log deleted");
    await row.waitFor({ state: "detached", timeout: 10_000 });
    expect(s.destinations.get("spin30-log")).toBeUndefined();
  });

  test("tokens: a range makes a table and a .tar.gz download that unpacks to the boot scripts' files", async () => {
    await page.goto("/admin/tokens");
    await page.fill("input[name=prefix]", "spin");
    await page.fill("input[name=from]", "30");
    await page.fill("input[name=to]", "41");
    await page.fill("input[name=kind]", "log");
    await page.fill("input[name=access_url]", "https://relay.example.org/access");
    await page.click("#token-form button[type=submit]");
    await page.waitForSelector('tr[data-device="spin41"]');
    expect(await page.locator("tr[data-device]").count()).toBe(12);
    await shot(page, "tokens");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-tar")]);
    expect(download.suggestedFilename()).toBe("log-tokens-spin30-spin41.tar.gz");
    const dir = tempDir();
    try {
      const file = join(dir.dir, "t.tar.gz");
      await download.saveAs(file);
      mkdirSync(join(dir.dir, "out"));
      expect(Bun.spawnSync(["tar", "xzf", file, "-C", join(dir.dir, "out")]).exitCode).toBe(0);
      const names = readdirSync(join(dir.dir, "out")).sort();
      expect(names).toHaveLength(24);
      expect(names).toContain("log.access.spin30");
      expect(names).toContain("log.token.spin41");
      const claims = await verifyStreamToken(s.secret, readFileSync(join(dir.dir, "out", "log.token.spin30"), "utf8").trim(), "https://relay.example.org/access");
      expect(claims.topic).toBe("spin30-log");
    } finally {
      dir.remove();
    }
    await page.click("text=Add as destinations on this box");
    await page.waitForSelector("text=12 destination(s) added");
    expect(s.destinations.list()).toHaveLength(12);
    await s.destinations.removeAll();
  });

  test("Slack: the URL is saved and shown redacted; the test message reaches the (fake) Slack and its answer shows inline", async () => {
    await page.goto("/admin/slack");
    await page.fill("input[name=webhook_url]", slack.url("ok"));
    await page.click("text=Save URL");
    await page.waitForSelector("text=webhook URL saved");
    expect(await page.content()).not.toContain(SECRET_PART);
    await page.click("text=Send test message");
    await page.waitForSelector("#slack-test-result .notice.ok");
    expect(await page.textContent("#slack-test-result")).toContain("Slack answered");
    expect(slack.received.at(-1)!.text).toContain("Test message from Switchyard");
    await shot(page, "slack");
  });

  test("query: the table and a time-series chart", async () => {
    for (let i = 0; i < 40; i++) {
      s.hub.publish("sensor", JSON.stringify({ value: Math.round(20 + 5 * Math.sin(i / 4)) }), "test");
      await Bun.sleep(5);
    }
    await s.spool.durable();
    await page.goto("/admin/query");
    await page.fill("textarea[name=sql]", "SELECT ts, CAST(json_extract(data, '$.value') AS DOUBLE) AS temperature FROM messages WHERE stream = 'sensor' ORDER BY ts");
    await page.click("button:has-text('Run')");
    await page.waitForSelector("#query-summary");
    expect(await page.textContent("#query-summary")).toContain("40 row(s)");
    await page.waitForSelector("#query-chart .uplot canvas");
    expect(await page.locator("#query-table .scroll tbody tr").count()).toBe(40);
    await shot(page, "query");
    await page.fill("textarea[name=sql]", "SELECT nope FROM messages");
    await page.click("button:has-text('Run')");
    await page.waitForSelector("#query-error");
    expect(await page.textContent("#query-error")).toContain("nope");
  });

  test("settings: a bad value is shown by its field; a good one is saved", async () => {
    await page.goto("/admin/settings");
    await page.fill("#hub input[name=max_connections]", "lots");
    await page.click("#hub button[type=submit]");
    await page.waitForSelector("#max_connections-error");
    expect(await page.textContent("#max_connections-error")).toContain("not a whole number");
    await page.fill("#hub input[name=max_connections]", "2000");
    await page.click("#hub button[type=submit]");
    await page.waitForSelector("#hub .notice.ok");
    expect(s.store.settings.max_connections).toBe(2000);
    await shot(page, "settings");
  });

  test("on a phone screen the dashboard fits the width", async () => {
    const { context, page: phone } = await signedIn(browser, s.url, firstPassword(s.dataDir), { width: 390, height: 844 });
    s.hub.publish("rate-demo", "x", "test");
    await phone.goto("/admin");
    await phone.waitForSelector('tr[data-stream="rate-demo"]');
    const overflow = Number(await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth"));
    expect(overflow).toBeLessThanOrEqual(0);
    await shot(phone, "dashboard-phone");
    await context.close();
  });
});

// axe-core, the accessibility checker, over every admin page, empty and with content: a new page
// or a change that breaks accessibility (contrast, labels, links told apart by colour alone, ...) fails here.
describe("admin UI accessibility (axe-core in Chromium)", () => {
  const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
  const PAGES = ["/admin", "/admin/streams/axe-demo", "/admin/destinations", "/admin/query", "/admin/tokens", "/admin/slack", "/admin/settings", "/admin/bookings"];
  let s: TestServer;
  let b: Awaited<ReturnType<typeof launchBrowser>>;
  beforeAll(async () => {
    s = await startTestServer();
    b = await launchBrowser();
  });
  afterAll(async () => {
    await b?.close();
    await s?.close();
  });

  type AxeViolation = { id: string; impact: string; help: string; nodes: { target: string[] }[] };
  /** Every violation axe finds on the page now, one line each: impact, rule, what to fix, where. */
  async function violations(p: Page): Promise<string[]> {
    await p.addScriptTag({ content: AXE });
    const found = (await p.evaluate("axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations)")) as AxeViolation[];
    return found.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  }

  async function audit(): Promise<string[]> {
    const found: string[] = [];
    const admin = await signedIn(b.browser, s.url, firstPassword(s.dataDir));
    for (const path of PAGES) {
      await admin.page.goto(path);
      for (const v of await violations(admin.page)) found.push(`${path}: ${v}`);
    }
    await admin.context.close();
    return found;
  }

  test("the sign-in page has no violations", async () => {
    const context = await b.browser.newContext({ baseURL: s.url });
    const login = await context.newPage();
    await login.goto("/admin/login");
    expect(await violations(login)).toEqual([]);
    await context.close();
  });

  test("every admin page has no violations when empty (first start: no streams, destinations or alerts)", async () => {
    expect(await audit()).toEqual([]);
  });

  test("every admin page has no violations with a stream, a destination and an alert", async () => {
    s.hub.publish("axe-demo", JSON.stringify({ v: 1 }), "test");
    const r = await fetch(`${s.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "axe", stream: "axe-demo", destination: "ws://127.0.0.1:9/ws/axe-copy", token: "" }), headers: s.adminHeaders });
    expect(r.ok).toBe(true);
    expect(await audit()).toEqual([]);
  });
});
