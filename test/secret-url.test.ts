import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { redactDestination } from "../app/relay/secret-url.ts";
import { asAdmin, signIn } from "./support/admin.ts";
import { freeTcpPort, startTestServer, waitFor, type TestServer } from "./support/server.ts";

// Real servers and a real webhook receiver: more than Bun's 5 s default on a busy machine.
setDefaultTimeout(60_000);

const SECRETS = ["s3cret-pass", "abc123secretpath", "k3y-in-query"];
let srv: TestServer | null = null;
let hook: ReturnType<typeof Bun.serve> | null = null;
afterEach(async () => {
  await srv?.close();
  hook?.stop(true);
  srv = null;
  hook = null;
});

/** A webhook receiver: records what it got; answers `status()`. */
function receiver(status: () => number) {
  const got: { auth: string | null; path: string; body: string }[] = [];
  hook = Bun.serve({
    hostname: "127.0.0.1", port: 0,
    async fetch(req) {
      const u = new URL(req.url);
      got.push({ auth: req.headers.get("authorization"), path: u.pathname + u.search, body: await req.text() });
      return new Response("", { status: status() });
    },
  });
  return { port: hook.port, got };
}

const expectNoSecret = (text: string, where: string) => {
  for (const s of SECRETS) expect(text.includes(s), `${where} shows ${s}`).toBe(false);
};

describe("webhook destination URLs are secrets", () => {
  it("are redacted in the API, the admin page, last_error and the log, yet the webhook gets the full URL; a rule posted back keeps it", async () => {
    let answer = 200;
    const r = receiver(() => answer);
    srv = await startTestServer();
    const url = `http://hook-user:${SECRETS[0]}@127.0.0.1:${r.port}/hooks/${SECRETS[1]}?key=${SECRETS[2]}`;
    const post = (rule: unknown) => fetch(`${srv!.url}/api/destinations`, { method: "POST", body: JSON.stringify(rule) });
    const created = await post({ id: "wh", stream: "spin30", destination: url, token: "", kind: "webhook" });
    expect(created.status).toBe(200);
    const shown = `http://<redacted>@127.0.0.1:${r.port}/hooks/<redacted>?<redacted>`;
    expect((await created.json()).destination).toBe(shown);

    await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: "one" });
    await waitFor(() => r.got.length === 1, "the webhook POST");
    // The receiver got the real thing: credentials, secret path and query.
    expect(r.got[0]).toMatchObject({ auth: `Basic ${btoa(`hook-user:${SECRETS[0]}`)}`, path: `/hooks/${SECRETS[1]}?key=${SECRETS[2]}`, body: "one" });

    // A failing webhook: the status and the log say why, without the secrets.
    answer = 500;
    await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: "two" });
    await waitFor(async () => (await (await fetch(`${srv!.url}/api/destinations/wh`)).json()).status.last_error !== null, "the failure to show");
    const view = await (await fetch(`${srv.url}/api/destinations/wh`)).json();
    expect(view.status.last_error).toBe(`POST ${shown} answered 500`);
    answer = 200;
    await waitFor(() => r.got.some((g) => g.body === "two"), "the retry");

    const all = await (await fetch(`${srv.url}/api/destinations/all`)).text();
    expectNoSecret(all, "/api/destinations/all");
    const admin = asAdmin(srv, await signIn(srv));
    expectNoSecret(await (await admin.get("/admin/destinations")).text(), "the Destinations page");
    expectNoSecret(await (await admin.get("/admin/destinations/edit?id=wh")).text(), "the edit form");

    // Posted back as read (read-only status left out), the stored URL stays and still works.
    const { status: _status, ...rule } = view;
    expect((await post(rule)).status).toBe(200);
    expect(srv.destinations.get("wh")!.rule.destination).toBe(url);
    // The same from the admin page's edit form, which shows only the redacted URL.
    const saved = await admin.post("/admin/destinations", { editing: "1", id: "wh", stream: "spin30", destination: shown, token: "", file: "", kind: "webhook", batch: "1" });
    expect(saved.status).toBe(200);
    expect(srv.destinations.get("wh")!.rule.destination).toBe(url);
    await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: "three" });
    await waitFor(() => r.got.some((g) => g.body === "three" && g.path.includes(SECRETS[1]!)), "delivery after the round trip");
    // The marker on a rule it does not belong to is refused, not stored as a URL.
    const copy = await post({ ...rule, id: "copy" });
    expect(copy.status).toBe(400);
    expect((await copy.json()).error.message).toContain("holds the redaction marker");
    expect(srv.destinations.get("copy")).toBeUndefined();

    expectNoSecret(srv.logs.join("\n"), "the log");
  });

  it("a webhook that cannot be reached reports it without the URL's secrets", async () => {
    srv = await startTestServer();
    const port = freeTcpPort();
    const url = `http://u:${SECRETS[0]}@127.0.0.1:${port}/hooks/${SECRETS[1]}?key=${SECRETS[2]}`;
    await fetch(`${srv.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "down", stream: "s", destination: url, token: "", kind: "webhook" }) });
    await fetch(`${srv.url}/api/streams/s/messages`, { method: "POST", body: "x" });
    await waitFor(async () => (await (await fetch(`${srv!.url}/api/destinations/down`)).json()).status.last_error !== null, "the failure");
    const last = (await (await fetch(`${srv.url}/api/destinations/down`)).json()).status.last_error as string;
    expect(last).toStartWith(`POST http://<redacted>@127.0.0.1:${port}/hooks/<redacted>?<redacted> failed: `);
    expectNoSecret(last, "last_error");
    expectNoSecret(srv.logs.join("\n"), "the log");
  });

  it("keeps what tells destinations apart: host, and a relay's path (a topic, not a secret)", () => {
    expect(redactDestination("https://relay.example.org/session/spin30-log", "websocket")).toBe("https://relay.example.org/session/spin30-log");
    expect(redactDestination("wss://a:b@relay.example.org/session/x?code=1", "websocket")).toBe("wss://<redacted>@relay.example.org/session/x?<redacted>");
    expect(redactDestination("https://hooks.example.org/T0SECRET", "webhook")).toBe("https://hooks.example.org/<redacted>");
    expect(redactDestination("https://hooks.example.org/", "webhook")).toBe("https://hooks.example.org/");
    expect(redactDestination("not a url", "webhook")).toBe("<redacted>");
  });
});
