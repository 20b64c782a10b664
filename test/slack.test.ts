import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { SlackNotifier } from "../app/alerts/notifier.ts";
import { sendToSlack } from "../app/alerts/slack.ts";
import { silentLogger } from "../app/core/logger.ts";
import { cli } from "./support/cli.ts";
import { connect } from "./support/client.ts";
import { SECRET_PART, startFakeSlack, type FakeSlack } from "./support/fake-slack.ts";
import { RawWebSocket } from "./support/raw-socket.ts";
import { freeUdpPort, offsetClock, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine.
setDefaultTimeout(60_000);

let slack: FakeSlack;
const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => {});
  slack?.stop();
});


const texts = () => slack.received.map((m) => m.text.split("\n")[0]!);

describe("switchyard slack test", () => {
  it.each([
    ["ok", 0, "Slack accepted the message"],
    ["gone", 1, "Slack answered 404 no_service: the webhook was removed or the URL is wrong"],
    ["bad", 1, "Slack answered 400 invalid_payload"],
  ])("reports Slack's answer for /%s with exit code %d", async (path, code, message) => {
    slack = startFakeSlack();
    const tmp = tempDir();
    try {
      const r = await cli(["slack", "test", "--text", "hello from the test", "--data-dir", tmp.dir], { SWITCHYARD_SLACK_WEBHOOK_URL: slack.url(path) });
      expect(r.code).toBe(code);
      expect(r.stdout + r.stderr).toContain(message);
      expect(r.stdout + r.stderr).not.toContain(SECRET_PART);
      if (code === 0) expect(slack.received[0]!.text).toContain("hello from the test");
    } finally {
      tmp.remove();
    }
  });

  it("reports a time-out, no network, a bad URL and no URL, each with exit code 1", async () => {
    slack = startFakeSlack();
    const tmp = tempDir();
    try {
      const slow = await cli(["slack", "test", "--timeout", "1", "--data-dir", tmp.dir], { SWITCHYARD_SLACK_WEBHOOK_URL: slack.url("slow") });
      expect(slow.code).toBe(1);
      expect(slow.stderr).toContain("Slack did not answer within 1 s");
      const closedPort = await freeUdpPort(); // nothing listens on TCP there either
      const refused = await cli(["slack", "test", "--data-dir", tmp.dir], { SWITCHYARD_SLACK_WEBHOOK_URL: `http://127.0.0.1:${closedPort}/services/${SECRET_PART}` });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("could not reach Slack");
      expect(refused.stderr).not.toContain(SECRET_PART);
      const bad = await cli(["slack", "test", "--data-dir", tmp.dir], { SWITCHYARD_SLACK_WEBHOOK_URL: "hooks.slack.com/x" });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain("is not a URL");
      const none = await cli(["slack", "test", "--data-dir", tmp.dir]);
      expect(none.code).toBe(1);
      expect(none.stderr).toContain("no Slack webhook URL is set");
    } finally {
      tmp.remove();
    }
  });

  it("stores the URL with set-url and shows it only redacted", async () => {
    slack = startFakeSlack();
    const tmp = tempDir();
    try {
      const set = await cli(["slack", "set-url", slack.url("ok"), "--data-dir", tmp.dir]);
      expect(set.code).toBe(0);
      expect(set.stdout).not.toContain(SECRET_PART);
      const show = await cli(["slack", "show", "--data-dir", tmp.dir]);
      expect(show.stdout).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/ok\/…\(redacted\) \(from the settings store\)\n$/);
      expect((await cli(["slack", "test", "--data-dir", tmp.dir])).code).toBe(0);
      expect((await cli(["slack", "set-url", "ftp://x", "--data-dir", tmp.dir])).code).toBe(2);
    } finally {
      tmp.remove();
    }
  });
});

describe("Slack over the API", () => {
  it("sets the URL (redacted back), tests it, and never shows it", async () => {
    slack = startFakeSlack();
    const srv = await startTestServer();
    servers.push(srv);
    const put = await fetch(`${srv.url}/api/slack`, { method: "PUT", body: JSON.stringify({ webhook_url: slack.url("gone") }), headers: srv.adminHeaders });
    const view = await put.json();
    expect(view.webhook_url).toMatch(/\/gone\/…\(redacted\)$/);
    expect(view.source).toBe("settings");
    const failed = await fetch(`${srv.url}/api/slack/test`, { method: "POST", headers: srv.adminHeaders });
    expect(failed.status).toBe(502);
    expect(await failed.json()).toMatchObject({ ok: false, reason: "not_found", status: 404 });
    await fetch(`${srv.url}/api/slack`, { method: "PUT", body: JSON.stringify({ webhook_url: slack.url("ok") }), headers: srv.adminHeaders });
    const ok = await fetch(`${srv.url}/api/slack/test`, { method: "POST", body: JSON.stringify({ text: "from the UI" }), headers: srv.adminHeaders });
    expect(await ok.json()).toMatchObject({ ok: true });
    expect(texts()).toContain("from the UI");
    const bad = await fetch(`${srv.url}/api/slack`, { method: "PUT", body: JSON.stringify({ webhook_url: "nope" }), headers: srv.adminHeaders });
    expect(bad.status).toBe(400);
    for (const path of ["/api/slack", "/api/alerts", "/metrics", "/api/streams"]) {
      expect(await (await fetch(`${srv.url}${path}`, { headers: path === "/api/slack" || path === "/api/alerts" ? srv.adminHeaders : {} })).text()).not.toContain(SECRET_PART);
    }
    expect(srv.logs.join("")).not.toContain(SECRET_PART);
  });
});

describe("alert rules", () => {
  async function alerting(settings: Parameters<typeof startTestServer>[0], startup: Parameters<typeof startTestServer>[1] = {}) {
    slack = startFakeSlack();
    const srv = await startTestServer({ alert_cooldown_seconds: 0, ...settings }, { slackWebhookUrl: slack.url("ok"), alertWindowTicks: 2, ...startup });
    servers.push(srv);
    return srv;
  }

  it("says when Switchyard starts and stops", async () => {
    const srv = await alerting({});
    await waitFor(() => texts().some((t) => /^Switchyard .* started$/.test(t)), "the start message");
    await srv.close();
    servers.length = 0;
    expect(texts().some((t) => /^Switchyard .* is stopping$/.test(t))).toBe(true);
  });

  it("fires once when a destination stays down and once when it recovers", async () => {
    const srv = await alerting({ alert_destination_down_seconds: 1, public_url: "https://hub.example.org" }, { backoff: { baseMs: 100, maxMs: 200 } });
    const relayPort = await freeUdpPort();
    await fetch(`${srv.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "0", stream: "spin30", destination: `ws://127.0.0.1:${relayPort}/ws/copy`, token: "" }) });
    await waitFor(() => texts().some((t) => t.startsWith("Destination 0 disconnected for")), "the down alert");
    const relay = await startTestServer({}, { port: relayPort });
    servers.push(relay);
    // A destination counts as up again once its connection has lasted (3 s), not the moment it opens.
    await waitFor(() => texts().includes("Resolved: Destination 0 is connected again (stream spin30)"), "the recovery", 15_000);
    await Bun.sleep(1500);
    expect(texts().filter((t) => t.startsWith("Destination 0 disconnected")).length).toBe(1);
    expect(texts().filter((t) => t.startsWith("Resolved: Destination 0")).length).toBe(1);
    const down = slack.received.find((m) => m.text.startsWith("Destination 0"))!;
    expect(down.text).toContain("stream spin30 → 127.0.0.1");
    expect(down.text).toContain("last error:");
    // The link opens the admin page of that destination.
    expect(down.text).toContain("https://hub.example.org/admin/destinations#d-0");
    expect(down.blocks).toHaveLength(2);
  });

  it("checks what starts on an idle box within a second or two, not at its next 10 s tick", async () => {
    const srv = await alerting({ alert_destination_down_seconds: 1 }, { backoff: { baseMs: 100, maxMs: 200 } });
    // Past the first tick, which found nothing going on: the next would be 10 s away.
    await Bun.sleep(1500);
    const relayPort = await freeUdpPort();
    await fetch(`${srv.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "0", stream: "spin31", destination: `ws://127.0.0.1:${relayPort}/ws/copy`, token: "" }) });
    await waitFor(() => texts().some((t) => t.startsWith("Destination 0 disconnected for")), "the down alert of a destination added to an idle box", 6000);
  });

  it("fires when a watched stream goes silent, recovers when it speaks, and holds back a flapping repeat within the cooldown", async () => {
    // A cooldown of an hour, passed by moving the server's clock: nothing ends it early on a loaded machine.
    // A 2 s rule over the engine's 1 s checks: a message always lands inside the window of the check after it, whatever the phase (with 1 s a late check could see it as silent already).
    const clock = offsetClock();
    const srv = await alerting({ alert_silent_streams: [{ pattern: "spin*", seconds: 2 }], alert_cooldown_seconds: 3600 }, { clock });
    const post = () => fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: "x" });
    await post();
    await waitFor(() => texts().some((t) => t.startsWith("Stream spin30 has been silent")), "the silence alert", 10_000);
    // Posted on every poll, not once: a check that runs late (a stalled process) then still finds a fresh message.
    await waitFor(async () => { await post(); return texts().includes("Resolved: Stream spin30 is speaking again"); }, "the recovery");
    // Silent again within the cooldown: recorded, not sent.
    await waitFor(async () => (await (await fetch(`${srv.url}/api/alerts`, { headers: srv.adminHeaders })).json()).alerts.some((a: { state: string; sent: boolean }) => a.state === "firing" && !a.sent), "the held-back repeat", 10_000);
    expect(texts().filter((t) => t.startsWith("Stream spin30 has been silent")).length).toBe(1);
    // Counted, not read off the newest record: the stream can fall silent again (a newer held-back record) before a poll on a loaded machine sees it.
    const resolvedSilences = async () => ((await (await fetch(`${srv.url}/api/alerts`, { headers: srv.adminHeaders })).json()).alerts as { rule: string; state: string; sent: boolean }[]).filter((a) => a.rule === "stream_silent" && a.state === "resolved");
    // Speaking resolves the held-back one (no all-clear: Slack never heard of it); posted on every poll, as above.
    await waitFor(async () => { await post(); return (await resolvedSilences()).length === 2; }, "the held-back repeat to resolve", 10_000);
    expect((await resolvedSilences()).map((a) => a.sent).sort()).toEqual([false, true]);
    clock.advance(3600_000);
    // After the cooldown the next silence goes out, saying it was held back.
    await waitFor(() => texts().filter((t) => t.startsWith("Stream spin30 has been silent")).length === 2, "the second silence message", 10_000);
    const second = slack.received.filter((m) => m.text.startsWith("Stream spin30 has been silent"))[1]!;
    expect(second.text).toContain("also fired 1 time since the last message");
    expect(texts().filter((t) => t === "Resolved: Stream spin30 is speaking again").length).toBe(1);
  });

  it("fires on UDP rejects over the limit and recovers when they stop", async () => {
    const port = await freeUdpPort();
    await alerting({ alert_udp_reject_percent: 10 }, { udpPort: port });
    const s = await Bun.udpSocket({ hostname: "127.0.0.1" });
    for (let i = 0; i < 40; i++) s.send(i % 2 ? "{broken" : '{"stream":"ok1"}', port, "127.0.0.1");
    await waitFor(() => texts().some((t) => /^\d+% of UDP records rejected in the last minute$/.test(t)), "the UDP alert", 5000);
    expect(slack.received.find((m) => m.text.includes("UDP records rejected"))!.text).toContain("truncated 20");
    await waitFor(() => texts().includes("Resolved: UDP rejects are back under the limit"), "the recovery", 5000);
  });

  it("fires when slow subscribers lose messages and recovers when they keep up", async () => {
    const srv = await alerting({ backpressure_limit_bytes: 64 * 1024 });
    const stalled = await RawWebSocket.open(srv.port, "/ws/flood");
    stalled.stall();
    const pub = await connect(srv.wsUrl("flood"));
    // ~30 MB: far past the kernel's socket buffers and the 64 KiB limit.
    for (let i = 0; i < 30_000; i++) { pub.ws.send("f".repeat(1000)); if (i % 500 === 499) await Bun.sleep(1); }
    await waitFor(() => texts().includes("Slow subscribers are losing messages"), "the backpressure alert", 5000);
    stalled.destroy();
    await waitFor(() => texts().includes("Resolved: Subscribers are keeping up again"), "the recovery", 8000);
  });

  it("fires when the data dir's disk is nearly full and recovers when space comes back", async () => {
    const disk = { free: 50, total: 1000 };
    await alerting({ alert_disk_free_percent: 10 }, { diskSpace: () => disk });
    await waitFor(() => texts().includes("Disk space low: 5.0% free"), "the disk alert", 5000);
    disk.free = 500;
    await waitFor(() => texts().includes("Resolved: Disk space is back over the limit"), "the recovery", 5000);
  });
});

describe("Slack never blocks anything", () => {
  it("keeps the hub publishing and answering while Slack hangs, and bounds the queue (drops counted)", async () => {
    slack = startFakeSlack();
    const notifier = new SlackNotifier(() => slack.url("slow"), silentLogger, { timeoutMs: 60_000 });
    let accepted = 0;
    for (let i = 0; i < 150; i++) if (notifier.enqueue({ text: `alert ${i}` })) accepted++;
    expect(accepted).toBe(100);
    expect(notifier.stats()).toMatchObject({ queued: 100, dropped: 50, sent: 0 });

    const srv = await startTestServer({ alert_silent_streams: [{ pattern: "*", seconds: 1 }], alert_cooldown_seconds: 0 }, { slackWebhookUrl: slack.url("slow") });
    servers.push(srv);
    const sub = await connect(srv.wsUrl("busy"));
    for (let i = 0; i < 500; i++) await fetch(`${srv.url}/api/streams/busy/messages`, { method: "POST", body: `m${i}` });
    expect(await sub.received(500)).toHaveLength(500);
    await waitFor(() => slack.hits.includes("slow"), "a send to the hanging Slack");
    expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
    notifier.stop(); // its queue would go on retrying the stopped fake Slack through later tests
  });

  it("retries a failing Slack with backoff and delivers in order once it recovers", async () => {
    slack = startFakeSlack(3);
    const notifier = new SlackNotifier(() => slack.url("flaky"), silentLogger, { baseDelayMs: 50 });
    notifier.enqueue({ text: "first" });
    notifier.enqueue({ text: "second" });
    await waitFor(() => slack.received.length === 2, "both messages");
    expect(slack.received.map((m) => m.text)).toEqual(["first", "second"]);
    expect(slack.hits.length).toBe(5);
    expect(notifier.stats()).toMatchObject({ sent: 2, failed: 0, queued: 0 });
  });

  it("gives up at once on a webhook Slack says is gone", async () => {
    slack = startFakeSlack();
    expect(await sendToSlack(slack.url("gone"), { text: "x" })).toMatchObject({ ok: false, reason: "not_found" });
    const notifier = new SlackNotifier(() => slack.url("gone"), silentLogger, { baseDelayMs: 50 });
    notifier.enqueue({ text: "x" });
    await waitFor(() => notifier.stats().failed === 1, "the failure");
    expect(slack.hits.length).toBe(2);
    expect(notifier.stats().last_error).toContain("404");
  });
});
