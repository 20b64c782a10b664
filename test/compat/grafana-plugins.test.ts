import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";

// Queries run DuckDB in a worker: more than Bun's 5 s default on a busy machine.
setDefaultTimeout(60_000);

// One server for the file: the requests below only read.
let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
  const publish = (stream: string, body: string | Uint8Array, type: string) =>
    fetch(`${srv.url}/api/streams/${stream}/messages`, { method: "POST", body, headers: { "content-type": type } });
  for (let i = 1; i <= 4; i++) await publish("spin30", JSON.stringify({ rpm: 100 * i, v: i }), "application/json");
  // Messages that are not JSON on the same stream: a field query must skip them.
  await publish("spin30", "motor stalled", "text/plain");
  await publish("spin30", "{not json", "text/plain");
  await publish("spin30", new Uint8Array([0x7b, 0x22, 0xff]), "application/octet-stream");
  for (let i = 1; i <= 2; i++) await publish("spin31", JSON.stringify({ rpm: 1000 * i }), "application/json");
});
afterAll(async () => { await srv.close(); });

// Grafana sends the admin token it was given as a custom header on every request.
const post = (path: string, body: unknown, headers: Record<string, string> = { "Content-Type": "application/json" }) =>
  fetch(`${srv.url}/grafana${path}`, { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body), headers: { ...srv.adminHeaders, ...headers } });
/** The range as Grafana sends it: ISO times plus the raw expressions. */
const range = () => {
  const from = new Date(Date.now() - 3_600_000).toISOString();
  const to = new Date(Date.now() + 60_000).toISOString();
  return { from, to, raw: { from: "now-1h", to: "now" } };
};
/** What Grafana's toDataFrame takes as a time series: {target, datapoints: [[number, epoch ms]…]}. */
function expectTimeSeries(x: unknown): asserts x is { target: string; datapoints: [number, number][] } {
  const s = x as { target: unknown; datapoints: unknown };
  expect(typeof s.target).toBe("string");
  expect(Array.isArray(s.datapoints)).toBe(true);
  for (const p of s.datapoints as unknown[][]) {
    expect(p).toHaveLength(2);
    expect(typeof p[0]).toBe("number");
    expect(Number.isInteger(p[1])).toBe(true);
  }
}
/** What toDataFrame takes as a table: {type: "table", columns: [{text, type}], rows} with rows as wide as the columns. */
function expectTable(x: unknown): asserts x is { type: "table"; columns: { text: string; type: string }[]; rows: unknown[][] } {
  const t = x as { type: unknown; columns: { text: unknown }[]; rows: unknown[][] };
  expect(t.type).toBe("table");
  for (const c of t.columns) expect(typeof c.text).toBe("string");
  for (const r of t.rows) expect(r).toHaveLength(t.columns.length);
}

describe("compat: the JSON data source (simpod-json-datasource), as its openapi.yaml and README describe it", () => {
  it("passes Save & test: GET / answers 200", async () => {
    expect((await fetch(`${srv.url}/grafana/`, { headers: srv.adminHeaders })).status).toBe(200);
    expect((await fetch(`${srv.url}/grafana`, { headers: srv.adminHeaders })).status).toBe(200);
  });

  it("lists metrics for the builder with a format payload, and its options", async () => {
    // Both documented request bodies: empty, and the current metric with its payload.
    for (const body of [{}, { metric: "spin30", payload: { format: "table" } }]) {
      const metrics = (await (await post("/metrics", body)).json()) as { label?: string; value: string; payloads: { name: string; type?: string; options?: { value: string }[] }[] }[];
      expect(metrics.map((m) => m.value)).toEqual(["spin30", "spin30:rpm", "spin30:v", "spin31", "spin31:rpm"]);
      for (const m of metrics) {
        expect(typeof m.value).toBe("string");
        expect(m.payloads[0]).toMatchObject({ name: "format", type: "select" });
      }
    }
    const options = await (await post("/metric-payload-options", { metric: "spin30", payload: {}, name: "format" })).json();
    expect(options).toEqual([{ label: "Time series", value: "timeseries" }, { label: "Table (latest messages)", value: "table" }]);
    expect(await (await post("/metric-payload-options", { metric: "spin30", payload: {}, name: "other" })).json()).toEqual([]);
  });

  it("answers /query as the README's request shape sends it: multi-value variables, a table by payload, non-JSON skipped", async () => {
    const r = range();
    const res = await post("/query", {
      panelId: 1, range: r, rangeRaw: r.raw, interval: "1h", intervalMs: 3_600_000, maxDataPoints: 550,
      targets: [
        // A multi-value template variable in Grafana's regex format, then the glob format.
        { target: "(spin30|spin31):rpm", refId: "A", payload: {} },
        { target: "{spin30,spin31}", refId: "B" },
        { target: "spin30", refId: "C", payload: { format: "table" } },
      ],
      adhocFilters: [],
    });
    expect(res.status).toBe(200);
    const out = (await res.json()) as Record<string, unknown>[];
    expect(out.map((x) => x.target)).toEqual(["spin30:rpm", "spin31:rpm", "spin30", "spin31", "spin30"]);
    const sum = (points: [number, number][]) => points.reduce((a, [v]) => a + v, 0);
    for (const s of out.slice(0, 4)) expectTimeSeries(s);
    expectTimeSeries(out[0]);
    expectTimeSeries(out[1]);
    expectTimeSeries(out[2]);
    // One or two hourly buckets (the hour may turn during the test).
    if (out[0].datapoints.length === 1) expect(out[0].datapoints[0]![0]).toBe(250);
    if (out[1].datapoints.length === 1) expect(out[1].datapoints[0]![0]).toBe(1500);
    expect(sum(out[2].datapoints)).toBe(7); // every message of spin30 counts, JSON or not
    expectTable(out[4]);
    expect(out[4].rows.map((row) => row[1])).toEqual([7, 6, 5, 4, 3, 2, 1]);
    expect(out[4].rows[0]![3]).toBe("binary");
    expect(out.every((x) => x.refId !== undefined)).toBe(true);
  });

  it("answers a failing target with its own error and the others with their data", async () => {
    const res = await post("/query", { range: range(), intervalMs: 3_600_000, targets: [{ target: "spin30:rpm", refId: "A" }, { target: "no such/stream!", refId: "B" }] });
    expect(res.status).toBe(200);
    const [good, bad] = (await res.json()) as Record<string, unknown>[];
    expectTimeSeries(good);
    expect(good.datapoints.length).toBeGreaterThan(0);
    expect(bad).toMatchObject({ refId: "B", datapoints: [] });
    expect(String(bad!.error)).toContain("allowed:");
  });

  it("refuses a request for more than 100 series (multi-value cross products) with a 400 naming the limit, before running any query", async () => {
    // (s0|…|s49):{f0,…,f39} is 2000 series, one query each: minutes of query slots from one small request.
    const streams = Array.from({ length: 50 }, (_, i) => `s${i}`).join("|");
    const fields = Array.from({ length: 40 }, (_, i) => `f${i}`).join(",");
    const cross = await post("/query", { range: range(), intervalMs: 1, maxDataPoints: 100_000, targets: [{ target: `(${streams}):{${fields}}`, refId: "A" }] });
    expect(cross.status).toBe(400);
    expect(await cross.text()).toContain("names 2000 series (50 streams × 40 fields); allowed: at most 100 series per request");
    // Many targets that are each under the limit add up.
    const sixty = `(${Array.from({ length: 60 }, (_, i) => `s${i}`).join("|")})`;
    const many = await post("/query", { range: range(), intervalMs: 3_600_000, targets: [{ target: sixty, refId: "A" }, { target: sixty.replace(/s/g, "t"), refId: "B" }] });
    expect(many.status).toBe(400);
    expect(await many.text()).toContain("this request names 120 series; allowed: at most 100 series per request");
    // A huge cross product is refused as cheaply (not built first).
    const huge = `(${Array.from({ length: 5000 }, (_, i) => `s${i}`).join("|")}):{${Array.from({ length: 5000 }, (_, i) => `f${i}`).join(",")}}`;
    expect((await post("/query", { range: range(), intervalMs: 3_600_000, targets: [{ target: huge, refId: "A" }] })).status).toBe(400);
    // The query slots are free: a query right after answers.
    const q = await fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql: "SELECT 1 AS one" }), headers: { ...srv.adminHeaders, "Content-Type": "application/json" } });
    expect(q.status).toBe(200);
  });

  it("fills query variables from /variable ({__text, __value}) and ad hoc filters from /tag-keys and /tag-values", async () => {
    const vars = await (await post("/variable", { payload: { target: "spin*" }, range: range() })).json();
    expect(vars).toContainEqual({ __text: "spin30", __value: "spin30" });
    expect(vars).toContainEqual({ __text: "spin31:rpm", __value: "spin31:rpm" });
    expect(await (await post("/variable", { payload: { target: "spin31" }, range: range() })).json()).toEqual([{ __text: "spin31", __value: "spin31" }, { __text: "spin31:rpm", __value: "spin31:rpm" }]);
    expect(await (await post("/tag-keys", {})).json()).toEqual([{ type: "string", text: "origin" }, { type: "string", text: "kind" }]);
    const origins = (await (await post("/tag-values", { key: "origin" })).json()) as { text: string }[];
    expect(origins.length).toBeGreaterThan(0);
    expect(origins[0]!.text).toMatch(/^http:/);
    expect(await (await post("/tag-values", { key: "kind" })).json()).toEqual([{ text: "text" }, { text: "binary" }]);
    // An ad hoc filter narrows every target: only binary messages of spin30.
    const [count] = (await (await post("/query", { range: range(), intervalMs: 3_600_000, targets: [{ target: "spin30", refId: "A" }], adhocFilters: [{ key: "kind", operator: "=", value: "binary" }] })).json()) as { datapoints: [number, number][] }[];
    expect(count!.datapoints.reduce((a, [v]) => a + v, 0)).toBe(1);
    const badFilter = await post("/query", { range: range(), targets: [{ target: "spin30" }], adhocFilters: [{ key: "data", operator: "=", value: "x" }] });
    expect(badFilter.status).toBe(400);
    expect((await badFilter.json()).error.message).toContain("allowed: origin, kind");
  });
});

describe("compat: SimpleJSON (grafana-simple-json-datasource), as its README and datasource.js send requests", () => {
  it("tests, searches, queries time series and tables by type, and annotates", async () => {
    expect((await fetch(`${srv.url}/grafana/`, { headers: srv.adminHeaders })).status).toBe(200);
    expect(await (await post("/search", { target: "rpm" })).json()).toEqual(["spin30:rpm", "spin31:rpm"]);
    const out = (await (await post("/query", {
      range: range(), interval: "1h", intervalMs: 3_600_000, maxDataPoints: 2, format: "json",
      targets: [{ target: "spin30:v", refId: "A", type: "timeserie" }, { target: "spin31", refId: "B", type: "table" }],
    })).json()) as Record<string, unknown>[];
    expectTimeSeries(out[0]);
    expectTable(out[1]);
    expect(out[1].rows).toHaveLength(2);
    const ann = await (await post("/annotations", { range: range(), annotation: { name: "alerts", enable: true, query: "" } })).json();
    expect(Array.isArray(ann)).toBe(true);
  });
});

describe("compat: Infinity (yesoreyeram-infinity-datasource)", () => {
  it("reads JSON with numbers typed as numbers, by GET with ?sql= or POST with the SQL in the body", async () => {
    // Grafana substitutes ${__from:date:iso} and ${__to:date:iso} before sending.
    const sql = `SELECT stream, max(seq) AS last, count(*) AS n, sum(length(data)) AS chars, 1.5::DECIMAL(4,1) AS d FROM messages WHERE ts >= '${range().from}'::TIMESTAMP GROUP BY stream ORDER BY stream`;
    const byGet = await (await fetch(`${srv.url}/grafana/json?sql=${encodeURIComponent(sql)}`, { headers: srv.adminHeaders })).json();
    expect(byGet).toEqual([{ stream: "spin30", last: 7, n: 7, chars: expect.any(Number), d: 1.5 }, { stream: "spin31", last: 2, n: 2, chars: expect.any(Number), d: 1.5 }]);
    expect(await (await post("/json", { sql })).json()).toEqual(byGet);
    expect(await (await post("/json", sql, { "Content-Type": "text/plain" })).json()).toEqual(byGet);
    expect(await (await post("/json", new URLSearchParams({ sql }).toString(), { "Content-Type": "application/x-www-form-urlencoded" })).json()).toEqual(byGet);
    // A whole number past 2^53 would lose digits as a JSON number: it stays a string.
    expect(await (await fetch(`${srv.url}/grafana/json?sql=${encodeURIComponent("SELECT 9007199254740993::BIGINT AS big, 42::BIGINT AS small")}`, { headers: srv.adminHeaders })).json()).toEqual([{ big: "9007199254740993", small: 42 }]);
    expect(await (await post("/csv", "SELECT count(*) AS n FROM messages WHERE stream = 'spin31'", { "Content-Type": "text/plain" })).text()).toBe("n\n2\n");
    const empty = await post("/json", "", { "Content-Type": "text/plain" });
    expect(empty.status).toBe(400);
  });
});
