import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SettingsStore } from "../app/config/store.ts";
import type { Settings } from "../app/config/settings.ts";
import { Spool } from "../app/log/spool.ts";
import { spawnServe } from "./support/cli.ts";
import { connect } from "./support/client.ts";
import { adminHeadersFor, freeUdpPort, startTestServer, waitFor, type TestServer } from "./support/server.ts";
import { smallDisk, tmpfsProblem, type SmallDisk } from "./support/tmpfs.ts";

// Real file systems filled up, servers killed and restarted: generous limits for a loaded machine.
setDefaultTimeout(120_000);

let disk: SmallDisk | null = null;
let srv: TestServer | null = null;
const procs: { p: { kill(sig?: string | number): void; exited: Promise<number> } }[] = [];
afterEach(async () => {
  for (const x of procs.splice(0)) {
    x.p.kill("SIGKILL");
    await x.p.exited;
  }
  await srv?.close();
  srv = null;
  disk?.unmount();
  disk = null;
});

/** A data dir on a fresh 4 MiB tmpfs, with `settings` stored before the server starts. */
function dataDirOnSmallDisk(settings: Partial<Settings> = {}): string {
  disk = smallDisk(4096)!;
  const dataDir = join(disk.dir, "data");
  const store = SettingsStore.open(dataDir);
  if (Object.keys(settings).length > 0) store.update(settings);
  store.close();
  return dataDir;
}

const post = (base: string, stream: string, body: string) => fetch(`${base}/api/streams/${stream}/messages`, { method: "POST", body, headers: { "content-type": "text/plain" } });
/** Bigger than a page, so it cannot slip into the slack at the end of the segment file on a full disk. */
const BIG = "x".repeat(9000);

describe.skipIf(tmpfsProblem !== null)("the log on a full disk (real tmpfs)", () => {
  it("never gives a seq twice: STATE.json failing at seal, compaction removing the segment, kill -9 and restart", async () => {
    const dataDir = dataDirOnSmallDisk({ log_segment_seconds: 1, log_compact_seconds: 2 });
    const a = await spawnServe(dataDir);
    procs.push(a);
    const base = `http://127.0.0.1:${a.port}`;
    for (let i = 1; i <= 5; i++) expect((await (await post(base, "y", `y${i}`)).json()).seq).toBe(i);
    disk!.fill();
    // Once the segment is due to be sealed (1 s), a publish on the full disk: it fails, and so does sealing.
    await Bun.sleep(1500);
    const refused = await post(base, "z", BIG);
    expect(refused.status).toBe(503);
    await Bun.sleep(2500);
    disk!.free();
    // Room again, and no more traffic: the segment holding y 1-5 is sealed and compaction removes it.
    const spoolDir = join(dataDir, "spool");
    const holdsY = () => Spool.segments(spoolDir).some((f) => { try { return [...Spool.read(join(spoolDir, f))].some((m) => m.stream === "y"); } catch { return false; } });
    await waitFor(() => !holdsY(), "compaction to remove the segments holding y", 60_000);
    expect(existsSync(join(dataDir, "logs", "stream=y"))).toBe(true);
    a.p.kill("SIGKILL");
    await a.p.exited;
    const b = await spawnServe(dataDir);
    procs.push(b);
    const next = await (await post(`http://127.0.0.1:${b.port}`, "y", "y6")).json();
    expect(next.seq).toBe(6);
    const q = await fetch(`http://127.0.0.1:${b.port}/api/query`, { method: "POST", body: JSON.stringify({ sql: "SELECT seq, count(*) AS n FROM messages WHERE stream = 'y' GROUP BY seq ORDER BY seq" }), headers: await adminHeadersFor(dataDir) });
    expect(q.status).toBe(200);
    const rows = (await q.json()) as { seq: number; n: number }[];
    expect(rows.map((r) => [Number(r.seq), Number(r.n)])).toEqual([[1, 1], [2, 1], [3, 1], [4, 1], [5, 1], [6, 1]]);
  });

  it("refuses publishes while it cannot write (503 saying nothing was stored, websocket close 1013), logs and alerts once, and takes them again once there is room", async () => {
    const dataDir = dataDirOnSmallDisk();
    const udpPort = await freeUdpPort();
    srv = await startTestServer({}, { dataDir, udpPort });
    const sub = await connect(srv.wsUrl("full"));
    const pub = await connect(srv.wsUrl("full"));
    pub.ws.send("before");
    await sub.received(1);
    disk!.fill();

    const first = await post(srv.url, "full", BIG);
    expect(first.status).toBe(503);
    const firstText = (await first.json()).error.message as string;
    expect(firstText).toMatch(/^message 2 of "full" is not stored: the log could not write it \(ENOSPC[^)]*\), so it is not stored; it was not delivered either; sending it again will not duplicate it in the log$/);

    pub.ws.send(BIG);
    const closed = await pub.closed;
    expect(closed.code).toBe(1013);
    expect(closed.reason).toContain("not stored and not delivered: the log cannot write");

    // UDP: refused too, and counted under its own reason.
    const udp = await Bun.udpSocket({ connect: { hostname: "127.0.0.1", port: udpPort } });
    udp.send(JSON.stringify({ stream: "full", v: 1 }));
    await waitFor(() => (srv!.udp.snapshot().listeners[0]?.rejected_by_reason.log_unavailable ?? 0) === 1, "the datagram to be refused as log_unavailable");
    udp.close();

    // A flood of refused publishes: each says so; the log says it a few times, not per write.
    for (let i = 0; i < 300; i++) {
      const r = await post(srv.url, "full", BIG);
      expect(r.status).toBe(503);
      if (i === 0) expect((await r.json()).error.message).toMatch(/^not stored and not delivered: the log cannot write \(.*ENOSPC.*\); try again later$/);
      else await r.arrayBuffer();
    }
    await Bun.sleep(3000);
    const writeErrors = srv.logs.filter((l) => l.includes("ERROR") && l.includes("spool")).length;
    expect(writeErrors).toBeLessThanOrEqual(5);
    const firing = () => srv!.alerts.snapshot().alerts.filter((a) => a.rule === "log_write" && a.state === "firing");
    expect(firing()).toHaveLength(1);
    // Without a Slack URL, the disk-space alert is recorded once for the episode too, not once a second.
    expect(srv.alerts.snapshot().alerts.filter((a) => a.rule === "disk_space" && a.state === "firing")).toHaveLength(1);
    expect(sub.messages).toEqual(["before"]);
    const health = await (await fetch(`${srv.url}/healthz`)).json();
    expect(health.log.writable).toBe(false);
    expect(health.log.refused).toBeGreaterThanOrEqual(302);
    expect(health.log.error).toContain("ENOSPC");

    disk!.free();
    await waitFor(() => srv!.spool.failure === null, "the log to write again", 15_000);
    expect((await post(srv.url, "full", "after")).status).toBe(200);
    await sub.received(2);
    expect(sub.messages).toEqual(["before", "after"]);
    await waitFor(() => srv!.alerts.snapshot().alerts.some((a) => a.rule === "log_write" && a.state === "resolved"), "the alert to resolve", 5000);
    expect(firing()).toHaveLength(1);
  });

  it("with log_deliver_unlogged, delivers what it cannot store, counts it, and its 503 says so", async () => {
    const dataDir = dataDirOnSmallDisk({ log_deliver_unlogged: true });
    srv = await startTestServer({}, { dataDir });
    const sub = await connect(srv.wsUrl("live"));
    const pub = await connect(srv.wsUrl("live"));
    disk!.fill();
    const r = await post(srv.url, "live", BIG);
    expect(r.status).toBe(503);
    expect((await r.json()).error.message).toContain("is not stored: the log could not write it (ENOSPC");
    pub.ws.send(`ws-${BIG}`);
    await sub.received(2);
    expect(sub.messages[1]).toBe(`ws-${BIG}`);
    expect(pub.ws.readyState).toBe(WebSocket.OPEN);
    expect(srv.hub.totals.deliveredUnlogged).toBeGreaterThanOrEqual(2);
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_log_delivered_unlogged_total [1-9]/);
  });

  it("starts on a full disk, serves what it can and refuses writes with a clear error, then writes once there is room", async () => {
    const dataDir = dataDirOnSmallDisk();
    const first = await spawnServe(dataDir);
    procs.push(first);
    expect((await post(`http://127.0.0.1:${first.port}`, "s", "one")).status).toBe(200);
    first.p.kill("SIGTERM");
    await first.p.exited;
    procs.length = 0;
    disk!.fill();
    const b = await spawnServe(dataDir);
    procs.push(b);
    const base = `http://127.0.0.1:${b.port}`;
    const health = await (await fetch(`${base}/healthz`)).json();
    expect(health.status).toBe("ok");
    expect(health.log.writable).toBe(false);
    const r = await post(base, "s", "two");
    expect(r.status).toBe(503);
    expect((await r.json()).error.message).toMatch(/not stored and not delivered: the log cannot write \(could not start a spool segment: ENOSPC/);
    expect(b.log()).not.toContain("SQLITE_IOERR");
    disk!.free();
    await waitFor(async () => (await post(base, "s", "three")).status === 200, "writes to work again", 20_000);
    expect(readdirSync(join(dataDir, "spool")).length).toBeGreaterThan(0);
  });
});

describe("a damaged spool segment at start", () => {
  it("keeps every intact record before and after flipped bytes readable through SQL, keeps the file, and reports the damage in the log and as an alert", async () => {
    srv = await startTestServer({ log_compact_seconds: 0 });
    const dataDir = srv.dataDir;
    for (let i = 1; i <= 300; i++) expect((await post(srv.url, "d", `record-${i}-${"z".repeat(30)}`)).status).toBe(200);
    const segment = srv.spool.current;
    await srv.stop();
    srv.store.close();
    // 8 bytes flipped in the middle of the file (record ~150's payload).
    const bytes = readFileSync(segment);
    const target = [...Spool.read(segment)].findIndex((m) => m.seq === 150);
    expect(target).toBe(149);
    const at = bytes.indexOf("record-150-");
    for (let i = 0; i < 8; i++) bytes[at + i] = bytes[at + i]! ^ 0xff;
    writeFileSync(segment, bytes);
    const size = bytes.length;
    srv = await startTestServer({}, { dataDir });
    expect(statSync(segment).size).toBe(size);
    const line = srv.logs.find((l) => l.includes("segment holds unreadable bytes"));
    expect(line).toContain(`file=${segment.split("/").pop()}`);
    expect(line).toContain("reason=bad_crc");
    expect(line).toContain("records_lost=1");
    expect(line).toContain('missing="d 150-150"');
    const alert = srv.alerts.snapshot().alerts.find((a) => a.rule === "log_damage");
    expect(alert?.text).toContain("records lost: 1; seqs missing: d 150-150");
    const q = await fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql: "SELECT seq FROM messages WHERE stream = 'd' ORDER BY seq" }), headers: srv.adminHeaders });
    expect(q.status).toBe(200);
    const seqs = ((await q.json()) as { seq: number }[]).map((r) => Number(r.seq));
    expect(seqs).toEqual(Array.from({ length: 300 }, (_, i) => i + 1).filter((s) => s !== 150));
    // Seqs go on from the highest, damaged or not.
    expect((await (await post(srv.url, "d", "next")).json()).seq).toBe(301);
    await srv.close();
    srv = null;
    rmSync(dataDir, { recursive: true, force: true });
  });
});
