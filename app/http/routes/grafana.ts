import type { Context, Hono } from "hono";
import { queryLimits } from "../../analytics/limits.ts";
import { adhocConditions, exactNumber, FIELD, MAX_SERIES, parseTarget, TAG_KEYS, type Series } from "./grafana-targets.ts";
import { bodyText, runQueryInWorker, type QueryJob } from "../../analytics/run-query.ts";
import { AppError, badRequest } from "../../core/errors.ts";
import { requireAdmin } from "../admin.ts";
import { readBodyCapped, readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

function parseRange(range: unknown): { from: number; to: number } {
  const r = range as { from?: unknown; to?: unknown } | undefined;
  const from = Date.parse(String(r?.from ?? ""));
  const to = Date.parse(String(r?.to ?? ""));
  if (Number.isNaN(from) || Number.isNaN(to) || from > to) throw badRequest("range: allowed: {\"from\": ISO time, \"to\": ISO time}, from before to");
  return { from: from * 1000, to: to * 1000 };
}

/** The payload option that asks for a table instead of a time series (simPod's builder shows it as a select). */
const FORMAT_PAYLOAD = {
  name: "format", label: "Format", type: "select", placeholder: "time series",
  options: [{ label: "Time series", value: "timeseries" }, { label: "Table (latest messages)", value: "table" }],
};

/** True when a target asks for a table: SimpleJSON's `type`, or the JSON plugin's payload `format`. */
function wantsTable(t: { type?: unknown; payload?: unknown }): boolean {
  const payload = t.payload as { format?: unknown } | undefined;
  return t.type === "table" || (typeof payload === "object" && payload !== null && payload.format === "table");
}

/** A glob (`spin*`) or, without `*`, a substring: what /search and /variable filter names with. */
function nameFilter(pattern: string): (name: string) => boolean {
  if (!pattern.includes("*")) return (n) => n.includes(pattern);
  // Matched piece by piece, in time linear in the name: a regex (.*a.*a…) backtracks exponentially.
  const pieces = pattern.split("*");
  const first = pieces[0]!;
  const last = pieces[pieces.length - 1]!;
  const middle = pieces.slice(1, -1).filter(Boolean);
  return (n) => {
    if (n.length < first.length + last.length || !n.startsWith(first) || !n.endsWith(last)) return false;
    const end = n.length - last.length;
    let at = first.length;
    for (const piece of middle) {
      const i = n.indexOf(piece, at);
      if (i < 0 || i + piece.length > end) return false;
      at = i + piece.length;
    }
    return true;
  };
}

/**
 * Binds a Grafana data source under /grafana for the three plugins operators use:
 * - JSON (simPod): GET / (test), POST /metrics, /metric-payload-options, /query,
 *   /variable, /tag-keys, /tag-values;
 * - SimpleJSON: GET / , POST /search, /query (with `type`), /annotations, /tag-keys, /tag-values;
 * - Infinity: GET or POST /grafana/json and /grafana/csv with the SQL.
 * Targets are `stream` (messages per interval) or `stream:field` (a numeric JSON
 * field's average), either part a multi-value variable. Admin only (Grafana sends
 * an admin token as Bearer).
 */
export function bindGrafanaRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.use("/grafana", requireAdmin(deps));
  app.use("/grafana/*", requireAdmin(deps));
  const limits = () => queryLimits(deps.config, deps.store.settings);
  const run = async (job: Omit<QueryJob, "dirs" | "timeoutMs">) => {
    const reply = await runQueryInWorker({ ...job, ...limits() });
    if (!reply.ok) throw new AppError(reply.status ?? (reply.busy ? 503 : reply.refused ? 400 : 500), `query failed: ${reply.error}`);
    return bodyText(reply.body); // text formats only here
  };
  const json = (c: { req: { raw: Request } }) => readJsonObject(c.req.raw, "a Grafana JSON request, e.g. {\"target\": \"\"}", {});

  /** Streams, and `stream:field` for numeric top-level fields of their recent JSON messages. */
  const names = (): string[] => {
    const out = new Set<string>(deps.hub.listStreams().map((s) => s.name));
    for (const s of [...out]) {
      for (const m of deps.recent.query(s, { limit: 20 }) ?? []) {
        if (typeof m.data !== "string" || !m.data.startsWith("{")) continue;
        try {
          for (const [k, v] of Object.entries(JSON.parse(m.data) as Record<string, unknown>)) if (typeof v === "number" && FIELD.test(k)) out.add(`${s}:${k}`);
        } catch { /* not JSON after all */ }
      }
    }
    return [...out].sort();
  };

  const health = (c: Context<HttpEnv>) => c.text("Switchyard Grafana data source: ok");
  app.get("/grafana", health);
  app.get("/grafana/", health);

  app.post("/grafana/search", async (c) => {
    const body = await json(c);
    return c.json(names().filter(nameFilter(typeof body.target === "string" ? body.target : "")));
  });

  app.post("/grafana/metrics", async (c) => {
    await json(c); // the current metric and payload: every metric is offered whatever is selected
    return c.json(names().map((n) => ({ label: n, value: n, payloads: [FORMAT_PAYLOAD] })));
  });

  app.post("/grafana/metric-payload-options", async (c) => {
    const body = await json(c);
    return c.json(body.name === "format" ? FORMAT_PAYLOAD.options : []);
  });

  app.post("/grafana/variable", async (c) => {
    const body = await json(c);
    const p = body.payload;
    const target = typeof p === "string" ? p : typeof p === "object" && p !== null && typeof (p as { target?: unknown }).target === "string" ? (p as { target: string }).target : "";
    return c.json(names().filter(nameFilter(target)).map((n) => ({ __text: n, __value: n })));
  });

  app.post("/grafana/tag-keys", async (c) => {
    await json(c);
    return c.json(TAG_KEYS.map((k) => ({ type: "string", text: k })));
  });

  app.post("/grafana/tag-values", async (c) => {
    const body = await json(c);
    if (body.key === "kind") return c.json([{ text: "text" }, { text: "binary" }]);
    if (body.key !== "origin") throw badRequest(`key: ${JSON.stringify(body.key)} is not a tag key; allowed: ${TAG_KEYS.join(", ")}`);
    const origins = new Set<string>();
    for (const s of deps.hub.listStreams()) for (const m of deps.recent.query(s.name, { limit: 100 }) ?? []) origins.add(m.origin);
    return c.json([...origins].sort().map((o) => ({ text: o })));
  });

  app.post("/grafana/query", async (c) => {
    const body = await json(c);
    const { from, to } = parseRange(body.range);
    const intervalMs = Math.max(1, Math.round(Number(body.intervalMs) || 60_000));
    const maxPoints = Math.min(100_000, Math.max(1, Math.round(Number(body.maxDataPoints) || 1000)));
    if (!Array.isArray(body.targets)) throw badRequest("targets: allowed: a list of {target, type or payload}");
    adhocConditions(body.adhocFilters, []); // a bad filter fails the request as a whole, before any query
    /** The WHERE clause for one stream and the range, with the ad hoc filters; params $1..$3 then the filters'. */
    const where = (stream: string) => {
      const params: (string | number)[] = [stream, from, to];
      const conds = ["stream = $1", "ts >= make_timestamp($2::BIGINT)", "ts <= make_timestamp($3::BIGINT)", ...adhocConditions(body.adhocFilters, params)];
      return { sql: conds.join(" AND "), params };
    };
    const table = async (s: Series) => {
      const w = where(s.stream);
      w.params.push(maxPoints);
      const rows = JSON.parse(await run({
        sql: `SELECT epoch_ms(ts) AS t, seq, origin, kind, data FROM messages WHERE ${w.sql} ORDER BY ts DESC LIMIT $${w.params.length}::BIGINT`,
        params: w.params, format: "json", rowLimit: maxPoints, signal: c.req.raw.signal,
      })) as { t: string; seq: string; origin: string; kind: string; data: string }[];
      return {
        target: s.name, type: "table",
        columns: [{ text: "Time", type: "time" }, { text: "seq", type: "number" }, { text: "origin", type: "string" }, { text: "kind", type: "string" }, { text: "data", type: "string" }],
        rows: rows.map((r) => [Number(r.t), Number(r.seq), r.origin, r.kind, r.data]),
      };
    };
    const series = async (s: Series) => {
      const w = where(s.stream);
      w.params.push(intervalMs);
      const bucket = `$${w.params.length}`;
      let value = "count(*)";
      let only = "";
      if (s.field) {
        w.params.push(`$.${s.field}`);
        // Only text messages that are JSON objects carry fields; everything else is skipped, never an error.
        value = `avg(TRY_CAST(CASE WHEN json_valid(data) THEN json_extract_string(data, $${w.params.length}) END AS DOUBLE))`;
        only = " AND kind = 'text' AND json_valid(data)";
      }
      const rows = JSON.parse(await run({
        sql: `SELECT epoch_ms(time_bucket(to_milliseconds(${bucket}::BIGINT), ts)) AS t, ${value} AS v FROM messages WHERE ${w.sql}${only} GROUP BY 1 ORDER BY 1`,
        params: w.params, format: "json", rowLimit: 1_000_000, signal: c.req.raw.signal,
      })) as { t: string; v: number | string | null }[];
      return { target: s.name, datapoints: rows.filter((r) => r.v !== null).map((r) => [Number(r.v), Number(r.t)]) };
    };
    const out: unknown[] = [];
    const errors: string[] = [];
    const targets = body.targets as { target?: unknown; type?: unknown; payload?: unknown; refId?: unknown; hide?: unknown }[];
    // Every series is one query: the request as a whole may ask for MAX_SERIES (a bad target answers its own error below).
    let total = 0;
    for (const t of targets) {
      if (t?.hide === true) continue;
      try {
        total += parseTarget(t?.target).length;
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
      }
    }
    if (total > MAX_SERIES) throw badRequest(`targets: this request names ${total} series; allowed: at most ${MAX_SERIES} series per request (each is one query), e.g. fewer values of a multi-value variable`);
    const gone = c.req.raw.signal;
    for (const t of targets) {
      if (t?.hide === true) continue;
      const asTable = wantsTable(t ?? {});
      let list: Series[];
      try {
        list = parseTarget(t?.target);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        errors.push(err.message);
        out.push(asTable ? { target: String(t?.target), refId: t?.refId, type: "table", columns: [], rows: [], error: err.message } : { target: String(t?.target), refId: t?.refId, datapoints: [], error: err.message });
        continue;
      }
      for (const s of list) {
        // A client that went away (Grafana cancels superseded refreshes) gets no more queries run for it.
        if (gone.aborted) return new Response(null, { status: 499 });
        try {
          out.push({ ...(await (asTable ? table(s) : series(s))), ...(t.refId !== undefined ? { refId: t.refId } : {}) });
        } catch (err) {
          // One failing target answers its own error; the others still answer.
          if (!(err instanceof AppError)) throw err;
          errors.push(err.message);
          out.push(asTable ? { target: s.name, refId: t.refId, type: "table", columns: [], rows: [], error: err.message } : { target: s.name, refId: t.refId, datapoints: [], error: err.message });
        }
      }
    }
    // A request whose every target failed is a bad request as a whole.
    if (errors.length > 0 && errors.length === out.length) throw badRequest(errors.join("; "));
    return c.json(out);
  });

  app.post("/grafana/annotations", async (c) => {
    const body = await json(c);
    const { from, to } = parseRange(body.range);
    const annotation = body.annotation ?? {};
    const alerts = deps.alerts.snapshot().alerts.filter((a) => {
      const t = Date.parse(a.ts) * 1000;
      return t >= from && t <= to;
    });
    return c.json(alerts.map((a) => ({ annotation, time: Date.parse(a.ts), title: `${a.rule}: ${a.state}`, text: a.text, tags: [a.rule, a.state, a.subject] })));
  });

  /** The SQL of an Infinity request: ?sql= on GET; on POST a JSON {"sql"}, a form field sql, or the body itself. */
  const sqlOf = async (c: Context<HttpEnv>): Promise<string> => {
    if (c.req.method === "GET") return c.req.query("sql") ?? "";
    const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    const text = new TextDecoder().decode(await readBodyCapped(c.req.raw, 1024 * 1024, "the SQL of a Grafana request"));
    if (type === "application/json") {
      let v: unknown;
      try { v = JSON.parse(text); } catch { throw badRequest('the body is not JSON; send {"sql": "SELECT …"}'); }
      const sql = (v as { sql?: unknown } | null)?.sql;
      if (typeof sql !== "string") throw badRequest('sql: allowed: {"sql": "SELECT …"} as the JSON body');
      return sql;
    }
    if (type === "application/x-www-form-urlencoded") return new URLSearchParams(text).get("sql") ?? "";
    return text.trim() || (c.req.query("sql") ?? "");
  };
  const infinity = (format: "csv" | "json") => async (c: Context<HttpEnv>) => {
    const sql = await sqlOf(c);
    if (!sql) throw badRequest("sql: allowed: one SELECT over the view messages, as ?sql= or (POST) the body");
    if (format === "csv") return c.body(await run({ sql, format: "csv", rowLimit: 100_000, signal: c.req.raw.signal }), 200, { "Content-Type": "text/csv; charset=utf-8" });
    // The grid format carries the column types: whole numbers go out as JSON numbers where that is exact.
    const grid = JSON.parse(await run({ sql, format: "grid", rowLimit: 100_000, signal: c.req.raw.signal })) as { columns: string[]; types: string[]; rows: unknown[][] };
    return c.json(grid.rows.map((row) => Object.fromEntries(grid.columns.map((col, i) => [col, exactNumber(row[i], grid.types[i] ?? "")]))));
  };
  for (const format of ["csv", "json"] as const) {
    app.get(`/grafana/${format}`, infinity(format));
    app.post(`/grafana/${format}`, infinity(format));
  }
}
