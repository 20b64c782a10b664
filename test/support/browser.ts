import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { existsSync } from "node:fs";

/** Debian's Chromium (installed by .ci/run with apt-get install -y chromium). */
export const CHROMIUM = process.env.SWITCHYARD_CHROMIUM ?? "/usr/bin/chromium";

/** Starts headless Chromium with the flags this sandbox needs (no sandbox, no background network); Playwright gives it a fresh profile. */
export async function launchBrowser(extraArgs: string[] = []): Promise<{ browser: Browser; close(): Promise<void> }> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's (apt-get install -y chromium; .ci/run does) or set SWITCHYARD_CHROMIUM`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", ...extraArgs],
  });
  return {
    browser,
    async close() {
      await browser.close();
    },
  };
}

/** A new browser context signed in to the admin UI at `baseUrl`. */
export async function signedIn(browser: Browser, baseUrl: string, password: string, viewport = { width: 1280, height: 900 }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ baseURL: baseUrl, viewport, acceptDownloads: true });
  const page = await context.newPage();
  await page.goto("/admin");
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL("**/admin"), page.click("button[type=submit]")]);
  return { context, page };
}
