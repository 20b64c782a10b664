import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { launchBrowser } from "./support/browser.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

setDefaultTimeout(60_000);

/** What a page's websocket saw: the protocol the server chose, a message, and how it ended. */
interface Seen {
  opened: boolean;
  protocol: string;
  echo: string | null;
  closeCode: number | null;
}

/** Opens `new WebSocket(url, protocols)` in the page, sends "ping" and waits for it to come back or the socket to close. */
function browserSocket(page: Page, url: string, protocols: string[]): Promise<Seen> {
  return page.evaluate(([u, p]) => new Promise<Seen>((resolve) => {
    const seen: Seen = { opened: false, protocol: "", echo: null, closeCode: null };
    const a = new WebSocket(u as string, p as string[]);
    const b = new WebSocket(u as string, p as string[]);
    let open = 0;
    const start = () => {
      if (++open < 2) return;
      seen.opened = true;
      seen.protocol = a.protocol;
      // Give the hub a moment to register both; then a's message reaches b.
      setTimeout(() => a.send("ping"), 200);
    };
    a.onopen = start;
    b.onopen = start;
    b.onmessage = (e) => { seen.echo = String(e.data); a.close(); b.close(); resolve(seen); };
    a.onclose = (e) => { seen.closeCode = e.code; if (!seen.opened) resolve(seen); };
    setTimeout(() => resolve(seen), 10_000);
  }), [url, protocols] as const);
}

describe("browser websocket clients pass a token as a subprotocol beside a named one", () => {
  let s: TestServer;
  let browser: Browser;
  let closeBrowser: () => Promise<void>;
  let page: Page;

  beforeAll(async () => {
    s = await startTestServer({ access: "token" });
    const b = await launchBrowser();
    browser = b.browser;
    closeBrowser = b.close;
    page = await browser.newPage();
    await page.goto(`${s.url}/healthz`);
  });
  afterAll(async () => {
    await closeBrowser?.();
    await s?.close();
  });

  test('new WebSocket(url, ["switchyard", "token." + jwt]) opens, is answered "switchyard" and carries messages', async () => {
    const jwt = await signStreamToken(s.secret, { topic: "lab", scopes: ["read", "write"], ttlSeconds: 60 });
    const seen = await browserSocket(page, s.wsUrl("lab"), ["switchyard", `token.${jwt}`]);
    expect(seen).toMatchObject({ opened: true, protocol: "switchyard", echo: "ping" });
  });

  test("a token offered alone does not open (the server will not echo it), and the server stays up", async () => {
    const jwt = await signStreamToken(s.secret, { topic: "lab", scopes: ["read", "write"], ttlSeconds: 60 });
    const seen = await browserSocket(page, s.wsUrl("lab"), [`token.${jwt}`]);
    expect(seen.opened).toBe(false);
    expect(seen.closeCode).toBe(1006);
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
  });
});
