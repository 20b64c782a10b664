import type { Hono } from "hono";
import { queryDirs } from "./query.ts";
import { runQueryInWorker, type QueryJob } from "../../analytics/run-query.ts";
import { AppError, badRequest } from "../../core/errors.ts";
import { streamNameProblem } from "../../core/stream-name.ts";
import { requireAdmin } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

const FIELD = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** A Grafana target: a stream, or `stream:field` for a numeric JSON field of its messages. */
function parseTarget(target: unknown): { stream: string; field: string | null } {
  if (typeof target !== "string") throw badRequest("target: allowed: a stream name, or stream:field");
  const i = target.lastIndexOf(":");
  const stream = i > 0 ? target.slice(0, i) : target;
  const field = i > 0 ? target.slice(i + 1) : null;
  const problem = streamNameProblem(stream);
  if (problem) throw badRequest(`target ${JSON.stringify(target)}: ${problem}`);
  if (field !== null && !FIELD.test(field)) throw badRequest(`target ${JSON.stringify(target)}: field ${JSON.stringify(field)} is not valid; allowed: [A-Za-z_][A-Za-z0-9_]*`);
  return { stream, field };
}

function parseRange(range: unknown): { from: number; to: number } {
  const r = range as { from?: unknown; to?: unknown } | undefined;
  const from = Date.parse(String(r?.from ?? ""));
  const to = Date.parse(String(r?.to ?? ""));
  if (Number.isNaN(from) || Number.isNaN(to) || from > to) throw badRequest("range: allowed: {\"from\": ISO time, \"to\": ISO time}, from before to");
  return { from: from * 1000, to: to * 1000 };
}

/**
 * Binds a Grafana data source (the SimpleJSON / JSON-datasource protocol) under
 * /grafana: GET / (test), POST /search (streams and their numeric JSON fields),
 * POST /query (time series bucketed to the asked interval, or tables), POST
 * /annotations (the alert history); and GET /grafana/csv|json?sql= for the
 * Infinity plugin. Admin only (Grafana sends an admin token as Bearer).
 */
export function bindGrafanaRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.use("/grafana", requireAdmin(deps));
  app.use("/grafana/*", requireAdmin(deps));
  const dirs = () => queryDirs(deps);
  const run = async (job: Omit<QueryJob, "dirs">) => {
    const reply = await runQueryInWorker({ ...job, dirs: dirs() });
    if (!reply.ok) throw new AppError(reply.busy ? 503 : reply.refused ? 400 : 500, `query failed: ${reply.error}`);
    return reply.body as string; // text formats only here
  };
  const json = (c: { req: { raw: Request } }) => readJsonObject(c.req.raw, "a Grafana JSON request, e.g. {\"target\": \"\"}", {});

  app.get("/grafana", (c) => c.text("Switchyard Grafana data source: ok"));

  app.post("/grafana/search", async (c) => {
    const body = await json(c);
    const filter = typeof body.target === "string" ? body.target : "";
    const names = new Set<string>(deps.hub.listStreams().map((s) => s.name));
    for (const s of [...names]) {
      // Numeric top-level fields of the stream's recent JSON messages become `stream:field` targets.
      for (const m of deps.recent.query(s, { limit: 20 }) ?? []) {
        if (typeof m.data !== "string" || !m.data.startsWith("{")) continue;
        try {
          for (const [k, v] of Object.entries(JSON.parse(m.data) as Record<string, unknown>)) if (typeof v === "number" && FIELD.test(k)) names.add(`${s}:${k}`);
        } catch { /* not JSON after all */ }
      }
    }
    return c.json([...names].filter((n) => n.includes(filter)).sort());
  });

  app.post("/grafana/query", async (c) => {
    const body = await json(c);
    const { from, to } = parseRange(body.range);
    const intervalMs = Math.max(1, Math.round(Number(body.intervalMs) || 60_000));
    const maxPoints = Math.min(100_000, Math.max(1, Math.round(Number(body.maxDataPoints) || 1000)));
    if (!Array.isArray(body.targets)) throw badRequest("targets: allowed: a list of {target, type}");
    const out: unknown[] = [];
    for (const t of body.targets as { target?: unknown; type?: unknown }[]) {
      const { stream, field } = parseTarget(t.target);
      if (t.type === "table") {
        const rows = JSON.parse(await run({
          sql: "SELECT epoch_ms(ts) AS t, seq, origin, kind, data FROM messages WHERE stream = $1 AND ts >= make_timestamp($2::BIGINT) AND ts <= make_timestamp($3::BIGINT) ORDER BY ts DESC LIMIT $4::BIGINT",
          params: [stream, from, to, maxPoints], format: "json", rowLimit: maxPoints, timeoutMs: deps.store.settings.query_timeout_seconds * 1000,
        })) as { t: string; seq: string; origin: string; kind: string; data: string }[];
        out.push({
          type: "table",
          columns: [{ text: "Time", type: "time" }, { text: "seq", type: "number" }, { text: "origin", type: "string" }, { text: "kind", type: "string" }, { text: "data", type: "string" }],
          rows: rows.map((r) => [Number(r.t), Number(r.seq), r.origin, r.kind, r.data]),
        });
        continue;
      }
      const value = field ? "avg(TRY_CAST(data::JSON->>$5 AS DOUBLE))" : "count(*)";
      const rows = JSON.parse(await run({
        sql: `SELECT epoch_ms(time_bucket(to_milliseconds($4::BIGINT), ts)) AS t, ${value} AS v FROM messages
              WHERE stream = $1 AND ts >= make_timestamp($2::BIGINT) AND ts <= make_timestamp($3::BIGINT) GROUP BY 1 ORDER BY 1`,
        params: field ? [stream, from, to, intervalMs, field] : [stream, from, to, intervalMs], format: "json", rowLimit: 1_000_000, timeoutMs: deps.store.settings.query_timeout_seconds * 1000,
      })) as { t: string; v: number | string | null }[];
      out.push({ target: t.target, datapoints: rows.filter((r) => r.v !== null).map((r) => [Number(r.v), Number(r.t)]) });
    }
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

  for (const [format, type] of [["csv", "text/csv; charset=utf-8"], ["json", "application/json"]] as const) {
    app.get(`/grafana/${format}`, async (c) => {
      const sql = c.req.query("sql");
      if (!sql) throw badRequest("sql: allowed: one SELECT over the view messages, as ?sql=");
      return c.body(await run({ sql, format, rowLimit: 100_000, timeoutMs: deps.store.settings.query_timeout_seconds * 1000 }), 200, { "Content-Type": type });
    });
  }
}
