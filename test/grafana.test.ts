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
