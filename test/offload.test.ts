import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { DuckDBInstance } from "@duckdb/node-api";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { OffloadState } from "../app/log/offload-state.ts";
import { RemoteCache } from "../app/log/remote-cache.ts";
import { datePartitions } from "../app/log/partitions.ts";
import { offloadCredentials, offloadKey, parseOffloadKey } from "../app/log/s3-store.ts";
import { asAdmin, signIn } from "./support/admin.ts";
import { cli } from "./support/cli.ts";
import { listKeys, S3RVER_KEYS, startTestS3, type TestS3 } from "./support/s3.ts";
import { offsetClock, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

const DAY = 86_400_000;

/** The server's local Parquet files, by path under its logs folder. */
function localFiles(dataDir: string): string[] {
  const logs = join(dataDir, "logs");
  return datePartitions(logs).flatMap((p) => readdirSync(p.path).filter((f) => f.endsWith(".parquet")).map((f) => `${relative(logs, p.path)}/${f}`)).sort();
}

/** Posts `n` text messages to `stream`, then moves the clock past the segment age and posts once more, which seals the segment. */
async function postAndSeal(srv: TestServer, clock: ReturnType<typeof offsetClock>, stream: string, n: number, sealStream = "seal"): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${srv.url}/api/streams/${encodeURIComponent(stream)}/messages`, { method: "POST", body: `${stream} #${i}`, headers: { "content-type": "text/plain" } });
    expect(r.status).toBeLessThan(300);
  }
  clock.advance(1100);
  const r = await fetch(`${srv.url}/api/streams/${sealStream}/messages`, { method: "POST", body: "seal", headers: { "content-type": "text/plain" } });
  expect(r.status).toBeLessThan(300);
}

/** Downloads every object under `prefix` into `dir` (keeping the key's folders) and reads them with DuckDB, node from the keys. */
async function readRemote(s3: TestS3, prefix: string, dir: string, sql: string): Promise<Record<string, unknown>[]> {
  const keys = await listKeys(s3.client, prefix);
  if (keys.length === 0) return [];
  const files: string[] = [];
  for (const { key } of keys) {
    const to = join(dir, key.slice(prefix.length));
    mkdirSync(dirname(to), { recursive: true });
    writeFileSync(to, new Uint8Array(await s3.client.file(key).arrayBuffer()));
    files.push(to);
  }
  const db = await DuckDBInstance.create(":memory:");
  const conn = await db.connect();
  try {
    const list = files.map((f) => `'${f.replaceAll("'", "''")}'`).join(", ");
    await conn.run(`CREATE VIEW remote AS SELECT * FROM read_parquet([${list}], hive_partitioning = true, hive_types = {'date': DATE, 'stream': VARCHAR, 'node': VARCHAR})`);
    const r = await conn.runAndReadAll(sql);
    return r.getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

const offloadSettings = (s3: TestS3, prefix: string) => ({
  offload_enabled: true, offload_s3_url: s3.url, offload_bucket: s3.bucket, offload_prefix: prefix,
  log_segment_seconds: 1, log_compact_seconds: 0,
});

describe("log offload to S3-compatible storage", () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3.close();
  });

  it("uploads each compacted file under <prefix>/node=<id>/stream=…/date=…/<file>, verified, readable as Parquet with its rows and node", async () => {
    const clock = offsetClock();
    const srv = await startTestServer(offloadSettings(s3, "fleet/t1"), { nodeId: "node-a", clock, s3Credentials: S3RVER_KEYS });
    const tmp = tempDir();
    try {
      await postAndSeal(srv, clock, "lab/spin.1", 5);
      await postAndSeal(srv, clock, "plain", 3);
      const o = await srv.compactor.runOnce();
      expect(o).toMatchObject({ ok: true });
      await srv.offloader.runOnce();
      const local = localFiles(srv.dataDir);
      expect(local.some((f) => f.startsWith("stream=lab%2Fspin.1/"))).toBe(true);
      const keys = (await listKeys(s3.client, "fleet/t1/")).map((k) => k.key);
      // One object per local file, at the documented key; the stream folder keeps its encoding, so any name maps to one key.
      expect(keys).toEqual(local.map((f) => offloadKey("fleet/t1", "node-a", f)).sort());
      for (const k of keys) expect(k).toMatch(/^fleet\/t1\/node=node-a\/stream=[^/]+\/date=\d{4}-\d{2}-\d{2}\/seg\d+_\d+_\d+\.parquet$/);
      expect(parseOffloadKey("fleet/t1", keys.find((k) => k.includes("spin"))!)).toMatchObject({ node: "node-a", stream: "lab/spin.1" });
      // Recorded as verified, with the sizes and checksums of the local files.
      const state = OffloadState.open(srv.dataDir);
      try {
        expect([...state.verifiedPaths()].sort()).toEqual(local);
      } finally {
        state.close();
      }
      const rows = await readRemote(s3, "fleet/t1/", tmp.dir, "SELECT node, stream, count(*)::INTEGER AS n FROM remote WHERE stream <> 'seal' GROUP BY ALL ORDER BY stream");
      expect(rows).toEqual([{ node: "node-a", stream: "lab/spin.1", n: 5 }, { node: "node-a", stream: "plain", n: 3 }]);
      // The local view has the node column too, for the Parquet files and the spool's tail alike.
      expect((await fetch(`${srv.url}/api/streams/tail/messages`, { method: "POST", body: "not compacted", headers: { "content-type": "text/plain" } })).status).toBeLessThan(300);
      const r = await fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql: "SELECT stream = 'tail' AS spooled, node, count(*)::INTEGER AS n FROM messages WHERE stream <> 'seal' GROUP BY ALL ORDER BY 1", format: "json" }) });
      expect(await r.json()).toEqual([{ spooled: false, node: "node-a", n: 8 }, { spooled: true, node: "node-a", n: 1 }]);
      expect(localFiles(srv.dataDir).some((f) => f.startsWith("stream=tail/"))).toBe(false);
      const status = await (await fetch(`${srv.url}/api/offload`, { headers: srv.adminHeaders })).json() as Record<string, unknown>;
      expect(status).toMatchObject({ enabled: true, bucket: "logs", prefix: "fleet/t1", node: "node-a", pending_files: 0, verified_files: local.length, credentials: "SWITCHYARD_S3_*", failing_since: null });
      const metrics = await (await fetch(`${srv.url}/metrics`)).text();
      expect(metrics).toContain(`switchyard_offload_verified_files ${local.length}`);
      expect(metrics).toMatch(/switchyard_offload_uploaded_bytes_total [1-9]\d*/);
      // The dashboard's Disk card says what is offloaded and what waits.
      const dashboard = await (await asAdmin(srv, await signIn(srv)).get("/admin")).text();
      expect(dashboard).toContain("Offloaded to S3:");
      expect(dashboard).toContain(`in ${local.length} files · waiting 0 B in 0 files`);
      // Another prefix (or bucket, or endpoint): the files here are uploaded there too before retention may remove them.
      expect((await fetch(`${srv.url}/api/settings`, { method: "PATCH", headers: srv.adminHeaders, body: JSON.stringify({ offload_prefix: "fleet/t1-moved" }) })).status).toBe(200);
      await srv.offloader.runOnce();
      expect((await listKeys(s3.client, "fleet/t1-moved/")).map((k) => k.key)).toEqual(local.map((f) => offloadKey("fleet/t1-moved", "node-a", f)).sort());
    } finally {
      await srv.close();
      tmp.remove();
    }
  }, 60_000);

  it("retries with backoff while the store is down, keeps every file locally (retention too) until it is verified, then uploads and alerts no more", async () => {
    const clock = offsetClock();
    // Messages three days old: retention (1 day) wants them gone at once.
    clock.advance(-3 * DAY);
    const srv = await startTestServer({ ...offloadSettings(s3, "fleet/t2"), log_retention_days: 1, alert_offload_seconds: 1, alert_cooldown_seconds: 0 }, { nodeId: "node-a", clock, s3Credentials: S3RVER_KEYS, offloadRetryMaxMs: 500 });
    try {
      await s3.stop();
      await postAndSeal(srv, clock, "old", 4);
      expect((await srv.compactor.runOnce()).ok).toBe(true);
      await srv.offloader.runOnce();
      // Retention (applied by the offloader's pass, after its failed upload) keeps what is not verified, and says so.
      expect(srv.offloader.lastRetention?.kept.files).toBeGreaterThan(0);
      expect(srv.logs.some((l) => l.includes("log retention kept files not yet verified in the remote store"))).toBe(true);
      const kept = localFiles(srv.dataDir);
      expect(kept.some((f) => f.startsWith("stream=old/"))).toBe(true);
      expect(srv.offloader.status().failing_since).not.toBeNull();
      expect(srv.offloader.status().pending_files).toBe(kept.length);
      expect(srv.logs.some((l) => l.includes("log offload failed; retrying"))).toBe(true);
      // The alert fires after alert_offload_seconds and says the disk grows.
      await waitFor(() => srv.alerts.snapshot().firing.some((f) => f.rule === "log_offload"), "the log_offload alert", 15_000);
      // Retention runs again and still keeps what is not verified (the day's two files are merged into one meanwhile).
      await postAndSeal(srv, clock, "old", 1);
      expect((await srv.compactor.runOnce()).ok).toBe(true);
      await srv.offloader.runOnce();
      expect(srv.offloader.lastRetention?.kept.files).toBeGreaterThan(0);
      const stillOld = localFiles(srv.dataDir).filter((f) => f.startsWith("stream=old/"));
      expect(stillOld.length).toBeGreaterThan(0);
      const count = async () => ((await (await fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql: "SELECT count(*)::INTEGER AS n FROM messages WHERE stream = 'old'", format: "json" }) })).json()) as { n: number }[])[0]!.n;
      expect(await count()).toBe(5);
      // The store comes back: the timer's retry uploads everything, and the alert resolves.
      await s3.start();
      await waitFor(() => srv.offloader.status().failing_since === null && srv.offloader.status().pending_files === 0, "the retried upload", 30_000);
      const keys = (await listKeys(s3.client, "fleet/t2/")).map((k) => k.key);
      const uploaded = localFiles(srv.dataDir);
      for (const f of uploaded) expect(keys).toContain(offloadKey("fleet/t2", "node-a", f));
      await waitFor(() => !srv.alerts.snapshot().firing.some((f) => f.rule === "log_offload"), "the alert to resolve", 15_000);
      // Now verified, retention (in the same pass as the upload, or the next) removes the old files locally; the remote objects stay.
      await postAndSeal(srv, clock, "other", 1);
      const third = await srv.compactor.runOnce();
      expect(third.ok).toBe(true);
      await srv.offloader.runOnce();
      for (const f of stillOld) expect(existsSync(join(srv.dataDir, "logs", f))).toBe(false);
      for (const f of stillOld) expect(await s3.client.file(offloadKey("fleet/t2", "node-a", f)).exists()).toBe(true);
      expect(await count()).toBe(0);
    } finally {
      await s3.start();
      await srv.close();
    }
  }, 90_000);

  it("a bucket that does not exist fails with the store's reason, the files stay pending, and the right bucket takes them", async () => {
    const clock = offsetClock();
    const srv = await startTestServer({ ...offloadSettings(s3, "fleet/t6"), offload_bucket: "no-such-bucket" }, { nodeId: "node-a", clock, s3Credentials: S3RVER_KEYS, offloadRetryMaxMs: 500 });
    try {
      await postAndSeal(srv, clock, "b", 2);
      expect((await srv.compactor.runOnce()).ok).toBe(true);
      await srv.offloader.runOnce();
      const status = (await (await fetch(`${srv.url}/api/offload`, { headers: srv.adminHeaders })).json()) as { last_error: string; pending_files: number; failing_since: string | null };
      expect(status.last_error).toContain("NoSuchBucket");
      expect(status.pending_files).toBe(localFiles(srv.dataDir).length);
      expect(status.failing_since).not.toBeNull();
      expect((await fetch(`${srv.url}/api/settings`, { method: "PATCH", headers: srv.adminHeaders, body: JSON.stringify({ offload_bucket: s3.bucket }) })).status).toBe(200);
      await waitFor(() => srv.offloader.status().pending_files === 0 && srv.offloader.status().failing_since === null, "the upload to the right bucket", 30_000);
      expect((await listKeys(s3.client, "fleet/t6/")).map((k) => k.key)).toEqual(localFiles(srv.dataDir).map((f) => offloadKey("fleet/t6", "node-a", f)));
    } finally {
      await srv.close();
    }
  }, 60_000);

  it("finds a remote object corrupted or deleted, and uploads it again", async () => {
    const clock = offsetClock();
    const srv = await startTestServer(offloadSettings(s3, "fleet/t3"), { nodeId: "node-a", clock, s3Credentials: S3RVER_KEYS, offloadRetryMaxMs: 500 });
    try {
      await postAndSeal(srv, clock, "a", 3);
      await postAndSeal(srv, clock, "b", 3);
      expect((await srv.compactor.runOnce()).ok).toBe(true);
      await srv.offloader.runOnce();
      const files = localFiles(srv.dataDir).filter((f) => f.startsWith("stream=a/") || f.startsWith("stream=b/"));
      expect(files.length).toBe(2);
      const [fa, fb] = files.map((f) => offloadKey("fleet/t3", "node-a", f));
      const good = new Uint8Array(await s3.client.file(fa!).arrayBuffer());
      // Same size, other bytes: only the checksum tells. And one object gone.
      const bad = good.slice();
      bad[bad.length - 20] = bad[bad.length - 20]! ^ 0xff;
      await s3.client.write(fa!, bad);
      await s3.client.file(fb!).delete();
      await srv.offloader.runOnce({ audit: true });
      // Both found; the uploads again are verified too (and retried if the store is slow to show the new object).
      await waitFor(() => srv.offloader.status().mismatches_total === 2 && srv.offloader.status().failing_since === null && srv.offloader.status().pending_files === 0, "both objects uploaded again", 30_000).catch((e) => { console.log(JSON.stringify(srv.offloader.status()), srv.logs.filter((l) => l.includes("offload")).join("\n")); throw e; });
      expect(new Uint8Array(await s3.client.file(fa!).arrayBuffer())).toEqual(good);
      expect(await s3.client.file(fb!).exists()).toBe(true);
      expect(srv.logs.some((l) => l.includes("does not match its file") && l.includes("checksum"))).toBe(true);
      expect(srv.logs.some((l) => l.includes("does not match its file") && l.includes("missing"))).toBe(true);
    } finally {
      await srv.close();
    }
  }, 60_000);

  it("a merge leaves no day counted twice: the merged file is uploaded and verified, then its inputs' objects are deleted", async () => {
    const clock = offsetClock();
    clock.advance(-2 * DAY); // a closed day: its files are merged once there are two
    const srv = await startTestServer(offloadSettings(s3, "fleet/t4"), { nodeId: "node-a", clock, s3Credentials: S3RVER_KEYS });
    const tmp = tempDir();
    try {
      await postAndSeal(srv, clock, "day", 4);
      expect((await srv.compactor.runOnce()).ok).toBe(true);
      await srv.offloader.runOnce();
      const first = (await listKeys(s3.client, "fleet/t4/node=node-a/stream=day/")).map((k) => k.key);
      expect(first).toHaveLength(1);
      // A second segment of the same day: compaction writes its file, then merges the two into one.
      await postAndSeal(srv, clock, "day", 6);
      expect((await srv.compactor.runOnce()).ok).toBe(true);
      const local = localFiles(srv.dataDir).filter((f) => f.startsWith("stream=day/"));
      expect(local).toHaveLength(1);
      expect(local[0]).toMatch(/merged_\d+\.parquet$/);
      await srv.offloader.runOnce();
      const after = (await listKeys(s3.client, "fleet/t4/node=node-a/stream=day/")).map((k) => k.key);
      expect(after).toEqual([offloadKey("fleet/t4", "node-a", local[0]!)]);
      // Two merges: the day's stream and the stream that sealed the segments, each one input uploaded before.
      expect(srv.offloader.status().remote_deleted_total).toBe(2);
      const rows = await readRemote(s3, "fleet/t4/", tmp.dir, "SELECT count(*)::INTEGER AS n, count(DISTINCT seq)::INTEGER AS d FROM remote WHERE stream = 'day'");
      expect(rows).toEqual([{ n: 10, d: 10 }]);
    } finally {
      await srv.close();
      tmp.remove();
    }
  }, 60_000);

  it("takes credentials write-only: a wrong key fails and is retried, the right one works, and no answer, page or log line shows them", async () => {
    const clock = offsetClock();
    const srv = await startTestServer(offloadSettings(s3, "fleet/t5"), { nodeId: "node-a", clock, offloadRetryMaxMs: 500 });
    const secret = "wRongSecret-7f3a9c";
    const keyId = "AKIAWRONGKEY42";
    try {
      const put = (body: unknown) => fetch(`${srv.url}/api/offload/credentials`, { method: "PUT", headers: srv.adminHeaders, body: JSON.stringify(body) });
      const stored = await put({ access_key_id: keyId, secret_access_key: secret });
      expect(stored.status).toBe(200);
      expect(await stored.text()).not.toContain(secret);
      await postAndSeal(srv, clock, "cred", 2);
      expect((await srv.compactor.runOnce()).ok).toBe(true);
      await srv.offloader.runOnce();
      expect(srv.offloader.status().last_error).toContain("InvalidAccessKeyId");
      expect(srv.offloader.status().pending_files).toBeGreaterThan(0);
      // Everything an admin can read: none shows either key.
      const answers = await Promise.all(["/api/offload", "/api/settings", "/metrics", "/api/alerts"].map(async (p) => (await fetch(`${srv.url}${p}`, { headers: srv.adminHeaders })).text()));
      const ui = asAdmin(srv, await signIn(srv));
      for (const p of ["/admin/settings", "/admin"]) {
        const r = await ui.get(p);
        expect(r.status).toBe(200);
        answers.push(await r.text());
      }
      expect(answers[4]).toContain("offload_bucket");
      for (const a of answers) {
        expect(a).not.toContain(secret);
        expect(a).not.toContain(keyId);
      }
      expect(answers[0]).toContain('"credentials":"settings"');
      expect(answers[4]).toContain("S3 credentials are set (saved here)");
      // The Settings page's credentials form: bad input next to its field (422), then the right pair; the next retry uploads.
      const bad = await ui.post("/admin/offload/credentials", { action: "save", access_key_id: "", secret_access_key: "has space" }, { "HX-Request": "true" });
      expect(bad.status).toBe(422);
      expect(await bad.text()).toContain("access_key_id-error");
      const saved = await ui.post("/admin/offload/credentials", { action: "save", access_key_id: S3RVER_KEYS.accessKeyId, secret_access_key: S3RVER_KEYS.secretAccessKey }, { "HX-Request": "true" });
      expect(saved.status).toBe(200);
      expect(await saved.text()).toContain("credentials saved");
      await waitFor(() => srv.offloader.status().pending_files === 0 && srv.offloader.status().failing_since === null, "the upload with the right key", 30_000);
      expect((await listKeys(s3.client, "fleet/t5/")).length).toBeGreaterThan(0);
      for (const l of srv.logs) {
        expect(l).not.toContain(secret);
        expect(l).not.toContain(keyId);
      }
      // Bad credential input: 400 naming the field.
      for (const body of [{ access_key_id: "x" }, { access_key_id: 5, secret_access_key: "y" }, { access_key_id: "a b", secret_access_key: "y" }, { access_key_id: "x".repeat(300), secret_access_key: "y" }, { access_key_id: "x", secret_access_key: "y", extra: 1 }]) {
        const r = await put(body);
        expect(r.status).toBe(400);
        expect(await r.text()).toMatch(/access_key_id|secret_access_key|extra/);
      }
      // check-config says where credentials in the environment come from, never what they are.
      const check = await cli(["check-config", "--data-dir", srv.dataDir], { SWITCHYARD_S3_ACCESS_KEY_ID: keyId, SWITCHYARD_S3_SECRET_ACCESS_KEY: secret, SWITCHYARD_RELAY_SECRET: `relay-${secret}` });
      expect(check.code).toBe(0);
      expect(check.stdout).toContain("credentials set (env SWITCHYARD_S3_*)");
      expect(check.stdout).toContain("relaySecret set (env SWITCHYARD_RELAY_SECRET)");
      expect(check.stdout + check.stderr).not.toContain(secret);
      expect(check.stdout + check.stderr).not.toContain(keyId);
      // The environment wins over the stored pair.
      expect(offloadCredentials({ ...S3RVER_KEYS, source: "AWS_*" }, srv.store)?.source).toBe("AWS_*");
    } finally {
      await srv.close();
    }
  }, 60_000);

  it("query --remote reads two nodes' offloaded partitions through the bounded cache, node from the keys, pruned by --stream/--node/--since", async () => {
    const clocks = [offsetClock(), offsetClock()];
    const a = await startTestServer(offloadSettings(s3, "fleet/q"), { nodeId: "node-a", clock: clocks[0], s3Credentials: S3RVER_KEYS });
    const b = await startTestServer(offloadSettings(s3, "fleet/q"), { nodeId: "node-b", clock: clocks[1], s3Credentials: S3RVER_KEYS });
    try {
      await postAndSeal(a, clocks[0]!, "lab/spin.1", 3);
      await postAndSeal(b, clocks[1]!, "lab/spin.1", 4);
      await postAndSeal(b, clocks[1]!, "other", 2);
      for (const srv of [a, b]) {
        expect((await srv.compactor.runOnce()).ok).toBe(true);
        await srv.offloader.runOnce();
      }
      const env = { SWITCHYARD_S3_ACCESS_KEY_ID: S3RVER_KEYS.accessKeyId, SWITCHYARD_S3_SECRET_ACCESS_KEY: S3RVER_KEYS.secretAccessKey };
      const q = (sql: string, ...flags: string[]) => cli(["query", "--remote", "--data-dir", a.dataDir, "--node-id", "node-a", "--format", "json", ...flags, sql], env);
      const all = await q("SELECT node, stream, count(*)::INTEGER AS n FROM messages WHERE stream <> 'seal' GROUP BY ALL ORDER BY node, stream");
      expect(all.stderr).toBe("");
      expect(JSON.parse(all.stdout)).toEqual([{ node: "node-a", stream: "lab/spin.1", n: 3 }, { node: "node-b", stream: "lab/spin.1", n: 4 }, { node: "node-b", stream: "other", n: 2 }]);
      // The keys select what is downloaded: only that stream's (and that node's) partitions are read.
      const one = await q("SELECT node, count(*)::INTEGER AS n, count(DISTINCT stream)::INTEGER AS streams FROM messages GROUP BY 1", "--stream", "lab/spin.1", "--node", "node-b");
      expect(JSON.parse(one.stdout)).toEqual([{ node: "node-b", n: 4, streams: 1 }]);
      const none = await q("SELECT count(*)::INTEGER AS n FROM messages", "--since", "2999-01-01");
      expect(JSON.parse(none.stdout)).toEqual([{ n: 0 }]);
      // The cache holds the files under their keys' folders, within offload_cache_mb.
      expect(existsSync(join(a.dataDir, "remote-cache", "node=node-b"))).toBe(true);
      // Bad flags and a cache too small say what to do.
      const bad = await q("SELECT 1", "--since", "yesterday");
      expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining("YYYY-MM-DD")]);
      a.store.update({ offload_cache_mb: 16 });
      await s3.client.write("fleet/q/node=node-c/stream=big/date=2026-01-01/seg1_0_0.parquet", new Uint8Array(17 * 1048576));
      const tooBig = await q("SELECT 1");
      expect(tooBig.code).toBe(1);
      expect(tooBig.stderr).toContain("offload_cache_mb");
      const local = await cli(["query", "--remote", "--data-dir", a.dataDir, "--format", "json", "SELECT 1"], {});
      expect(local.code).toBe(1);
    } finally {
      await a.close();
      await b.close();
    }
  }, 90_000);

  it("the remote cache keeps at most its size, least recently used out, and downloads again only what changed", async () => {
    const tmp = tempDir();
    try {
      const key = (n: string) => `fleet/c/node=n1/stream=s/date=2026-01-0${n}/seg${n}_0_0.parquet`;
      for (const n of ["1", "2", "3"]) await s3.client.write(key(n), new Uint8Array(6 * 1048576).fill(Number(n)));
      const cache = new RemoteCache(join(tmp.dir, "cache"), 13 * 1048576);
      const get = async (...ns: string[]) => {
        const { objects } = await RemoteCache.list(s3.client, "fleet/c", { streams: ["s"] });
        return cache.fetch(s3.client, "fleet/c", objects.filter((o) => ns.some((n) => o.key === key(n))));
      };
      const [p1] = await get("1");
      await get("2");
      expect(cache.bytes).toBe(12 * 1048576);
      // A third file: the least recently used (1) goes.
      await get("3");
      expect(existsSync(p1!)).toBe(false);
      expect(cache.bytes).toBeLessThanOrEqual(13 * 1048576);
      // A changed object is downloaded again; an unchanged one is not (its file stays the same inode).
      const [p3] = await get("3");
      const inode = statSync(p3!).ino;
      await s3.client.write(key("3"), new Uint8Array(6 * 1048576).fill(9));
      const [again] = await get("3");
      expect(new Uint8Array(readFileSync(again!).subarray(0, 1))[0]).toBe(9);
      const [same] = await get("3");
      expect(statSync(again!).ino).not.toBe(inode);
      expect(statSync(same!).ino).toBe(statSync(again!).ino);
      // Pruned by key before anything is downloaded: a date range that matches nothing lists nothing.
      expect((await RemoteCache.list(s3.client, "fleet/c", { since: "2026-02-01" })).objects).toEqual([]);
      // Keys that are not the log's (a stray object, a traversal attempt) are skipped, never written outside the cache.
      await s3.client.write("fleet/c/node=n1/stream=../date=2026-01-01/x.parquet", "x");
      await s3.client.write("fleet/c/README", "x");
      const listed = await RemoteCache.list(s3.client, "fleet/c");
      expect(listed.skipped.sort()).toEqual(["fleet/c/README", "fleet/c/node=n1/stream=../date=2026-01-01/x.parquet"]);
    } finally {
      tmp.remove();
    }
  });

  it("refuses bad offload settings with a 400 that names the field and what is allowed", async () => {
    const srv = await startTestServer();
    try {
      const cases: [Record<string, unknown>, string][] = [
        [{ offload_s3_url: "ftp://s3.example.org" }, "offload_s3_url"],
        [{ offload_s3_url: "http://user:pw@s3.example.org" }, "offload_s3_url"],
        [{ offload_s3_url: "http://s3.example.org/bucket?x=1" }, "offload_s3_url"],
        [{ offload_s3_url: `http://${"a".repeat(300)}.org` }, "offload_s3_url"],
        [{ offload_bucket: "Logs_Bucket" }, "offload_bucket"],
        [{ offload_bucket: "ab" }, "offload_bucket"],
        [{ offload_bucket: "a..b" }, "offload_bucket"],
        [{ offload_bucket: "192.168.0.1" }, "offload_bucket"],
        [{ offload_prefix: "fleet/../other" }, "offload_prefix"],
        [{ offload_prefix: ".." }, "offload_prefix"],
        [{ offload_prefix: "/fleet" }, "offload_prefix"],
        [{ offload_prefix: "a//b" }, "offload_prefix"],
        [{ offload_prefix: "x".repeat(5000) }, "offload_prefix"],
        [{ offload_prefix: 42 }, "offload_prefix"],
        [{ offload_region: "US EAST" }, "offload_region"],
        [{ offload_cache_mb: 1 }, "offload_cache_mb"],
        [{ offload_enabled: "yes" }, "offload_enabled"],
        [{ offload_enabled: true }, "offload_bucket"],
      ];
      for (const [patch, field] of cases) {
        const r = await fetch(`${srv.url}/api/settings`, { method: "PATCH", headers: srv.adminHeaders, body: JSON.stringify(patch) });
        const text = await r.text();
        expect([r.status, field, text.includes(field) && text.includes("allowed")]).toEqual([400, field, true]);
      }
      expect(srv.store.settings.offload_enabled).toBe(false);
      // The Settings page's form gives the same errors next to the field (422).
      const ui = await asAdmin(srv, await signIn(srv)).post("/admin/settings", { group: "offload", offload_enabled: "true", offload_bucket: "a..b", offload_prefix: "x/../y", offload_s3_url: "", offload_region: "us-east-1", offload_cache_mb: "1024" }, { "HX-Request": "true" });
      expect(ui.status).toBe(422);
      const html = await ui.text();
      expect(html).toContain("offload_bucket-error");
      expect(html).toContain("offload_prefix-error");
    } finally {
      await srv.close();
    }
  });
});
