import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser } from "playwright-core";
import { firstPassword } from "./support/admin.ts";
import { launchBrowser } from "./support/browser.ts";
import { freeTcpPort, startTestServer, tempDir, type TestServer } from "./support/server.ts";
import { makeCa, makeLeaf } from "./support/tls.ts";

setDefaultTimeout(60_000);

/** Chromium's hash of a certificate's public key (base64 SHA-256 of the SPKI), for --ignore-certificate-errors-spki-list. */
function spkiHash(certFile: string): string {
  const r = Bun.spawnSync(["sh", "-c", `openssl x509 -in '${certFile}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`]);
  return r.stdout.toString().trim();
}

describe("admin UI over HTTPS in Chromium", () => {
  const tmp = tempDir("switchyard-tls-browser-");
  let s: TestServer;
  let browser: Browser;
  let closeBrowser: () => Promise<void>;
  const redirectPort = freeTcpPort();

  beforeAll(async () => {
    const ca = makeCa(tmp.dir, "browser");
    const leaf = makeLeaf(tmp.dir, "localhost", ca);
    s = await startTestServer({ hsts_seconds: 600 }, { tls: { tlsCert: leaf.cert, tlsKey: leaf.key, redirectPort } });
    // Chromium accepts exactly this server's key (not any certificate): the page loads as a secure https:// origin.
    const b = await launchBrowser([`--ignore-certificate-errors-spki-list=${spkiHash(leaf.cert)}`]);
    browser = b.browser;
    closeBrowser = b.close;
  });
  afterAll(async () => {
    await closeBrowser?.();
    await s?.close();
    tmp.remove();
  });

  test("plain HTTP is sent to HTTPS, sign-in sets a Secure cookie, and Settings and the dashboard show the certificate", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`http://localhost:${redirectPort}/admin`);
    expect(page.url()).toStartWith(`https://localhost:${s.port}/admin/login`);
    await page.fill("input[name=password]", firstPassword(s.dataDir));
    await Promise.all([page.waitForURL("**/admin"), page.click("button[type=submit]")]);
    expect(await page.textContent("h1")).toBe("Dashboard");
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.httpOnly && c.value.length > 20);
    expect(session).toBeDefined();
    expect(session!.secure).toBe(true);
    expect(session!.sameSite).toBe("Strict");
    expect(await page.textContent("#tls-expiry")).toMatch(/^expires \d{4}-\d{2}-\d{2}$/);
    expect(await page.textContent("#streams")).toContain(`wss://this-host:`);
    await page.goto(`https://localhost:${s.port}/admin/settings`);
    const card = await page.textContent("#tls");
    expect(card).toContain("CN=localhost");
    expect(card).toContain("CN=browser test CA");
    expect(card).toContain(`port ${redirectPort} redirects to HTTPS`);
    expect(await page.inputValue("[name=hsts_seconds]")).toBe("600");
    await context.close();
  });
});
