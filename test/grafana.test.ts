import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { startTestServer, type TestServer } from "./support/server.ts";

// Queries run DuckDB in a child process: more than Bun's 5 s default.
setDefaultTimeout(60_000);

let srv: TestServer;
afterEach(async () => { await srv.close(); });

const post = (path: string, body: unknown) => fetch(`${srv.url}${path}`, { method: "POST", body: JSON.stringify(body), headers: srv.adminHeaders });
const range = () => ({ from: new Date(Date.now() - 3_600_000).toISOString(), to: new Date(Date.now() + 60_000).toISOString() });

describe("Grafana data source (SimpleJSON protocol)", () => {
  async function withData() {
    srv = await startTestServer();
    for (let i = 1; i <= 6; i++) {
      await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: JSON.stringify({ v: i, rpm: 100 * i, label: "x" }), headers: { "content-type": "application/json" } });
    }
  }

  it("answers the connection test and lists streams with their numeric fields", async () => {
    await withData();
    expect((await fetch(`${srv.url}/grafana`, { headers: srv.adminHeaders })).status).toBe(200);
    expect(await (await post("/grafana/search", { target: "" })).json()).toEqual(["spin30", "spin30:rpm", "spin30:v"]);
    expect(await (await post("/grafana/search", { target: "rpm" })).json()).toEqual(["spin30:rpm"]);
  });

  it("returns time series bucketed to the interval: a field's average, or a count of messages", async () => {
    await withData();
    const r = await (await post("/grafana/query", { range: range(), intervalMs: 3_600_000, maxDataPoints: 100, targets: [{ target: "spin30:v", type: "timeserie" }, { target: "spin30", type: "timeserie" }] })).json();
    expect(r).toHaveLength(2);
    expect(r[0].target).toBe("spin30:v");
    const total = (points: [number, number][]) => points.reduce((a, [v]) => a + v, 0);
    // One or two hourly buckets (the hour may turn during the test): the count adds up to 6, the mean of v is 3.5.
    expect(total(r[1].datapoints)).toBe(6);
    for (const [v, t] of r[0].datapoints) {
      expect(typeof v).toBe("number");
      expect(t % 3_600_000).toBe(0);
    }
    if (r[0].datapoints.length === 1) expect(r[0].datapoints[0][0]).toBe(3.5);
  });

  it("returns tables, annotations from the alert history, and CSV/JSON for the Infinity plugin", async () => {
    await withData();
    const [table] = await (await post("/grafana/query", { range: range(), maxDataPoints: 2, targets: [{ target: "spin30", type: "table" }] })).json();
    expect(table.type).toBe("table");
    expect(table.columns.map((c: { text: string }) => c.text)).toEqual(["Time", "seq", "origin", "kind", "data"]);
    expect(table.rows.map((r: unknown[]) => r[1])).toEqual([6, 5]);
    expect(typeof table.rows[0][0]).toBe("number");
    const ann = await (await post("/grafana/annotations", { range: range(), annotation: { name: "alerts" } })).json();
    // The alert history has the "started" entry from this server's start.
    expect(ann).toContainEqual(expect.objectContaining({ annotation: { name: "alerts" }, title: "lifecycle: info", text: expect.stringMatching(/^Switchyard .* started$/), tags: ["lifecycle", "info", "started"] }));
    const csv = await fetch(`${srv.url}/grafana/csv?sql=${encodeURIComponent("SELECT count(*) AS n FROM messages")}`, { headers: srv.adminHeaders });
    expect(await csv.text()).toBe("n\n6\n");
    const json = await fetch(`${srv.url}/grafana/json?sql=${encodeURIComponent("SELECT max(seq) AS last FROM messages")}`, { headers: srv.adminHeaders });
    expect(await json.json()).toEqual([{ last: 6 }]);
  });

  it("refuses bad targets, ranges and SQL with 400 and the reason", async () => {
    await withData();
    const bad = await post("/grafana/query", { range: range(), targets: [{ target: "spin30:v'); DROP", type: "timeserie" }] });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.message).toContain("allowed: [A-Za-z_][A-Za-z0-9_]*");
    expect((await post("/grafana/query", { range: { from: "yesterday" }, targets: [] })).status).toBe(400);
    const escape = await fetch(`${srv.url}/grafana/csv?sql=${encodeURIComponent("SELECT * FROM read_csv('/etc/passwd')")}`, { headers: srv.adminHeaders });
    expect(escape.status).toBe(400);
  });
});

describe("Grafana name filter (/search, /variable)", () => {
  it("matches globs without backtracking: a pattern of many *s against a long name answers at once and the server stays up", async () => {
    const { spawnServe } = await import("./support/cli.ts");
    const { adminHeadersFor, tempDir } = await import("./support/server.ts");
    const tmp = tempDir();
    const served = await spawnServe(tmp.dir);
    try {
      const base = `http://127.0.0.1:${served.port}`;
      const headers = await adminHeadersFor(tmp.dir);
      const name = "a".repeat(40);
      expect((await fetch(`${base}/api/streams/${name}/messages`, { method: "POST", body: "x" })).status).toBe(200);
      expect((await fetch(`${base}/api/streams/ab-cd/messages`, { method: "POST", body: "x" })).status).toBe(200);
      // A backtracking regex (^.*a.*a…b$) takes hours on this; the deadline is only there so the old code fails instead of hanging.
      const evil = `${"*a".repeat(16)}*b`;
      const search = await fetch(`${base}/grafana/search`, { method: "POST", headers, body: JSON.stringify({ target: evil }), signal: AbortSignal.timeout(30_000) });
      expect(await search.json()).toEqual([]);
      const variable = await fetch(`${base}/grafana/variable`, { method: "POST", headers, body: JSON.stringify({ payload: { target: evil } }), signal: AbortSignal.timeout(30_000) });
      expect(await variable.json()).toEqual([]);
      expect((await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(30_000) })).status).toBe(200);
      // The glob still means what it did: pieces in order, anchored at both ends.
      const match = async (target: string) => (await (await fetch(`${base}/grafana/search`, { method: "POST", headers, body: JSON.stringify({ target }) })).json()) as string[];
      expect(await match(`${"*a".repeat(16)}*`)).toEqual([name]);
      expect(await match("a*d")).toEqual(["ab-cd"]);
      expect(await match("*b*c*")).toEqual(["ab-cd"]);
      expect(await match("*c*b*")).toEqual([]);
      expect(await match("ab*")).toEqual(["ab-cd"]);
      expect(await match("*aa")).toEqual([name]);
      expect(await match("aa*aa")).toEqual([name]);
      expect(await match("ab*b")).toEqual([]);
      expect(await match("*")).toEqual([name, "ab-cd"]);
    } finally {
      served.p.kill("SIGKILL"); // a server stuck in a regex would not handle SIGTERM
      await served.p.exited;
      tmp.remove();
    }
  });
});
