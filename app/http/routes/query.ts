import type { Hono } from "hono";
import { runQueryInWorker, streamQueryInWorker } from "../../analytics/run-query.ts";
import { HTTP_ROW_LIMIT, queryLimits } from "../../analytics/limits.ts";
import { AppError, badRequest } from "../../core/errors.ts";
import { requireAdmin } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

const FORMATS = { json: "application/json", ndjson: "application/x-ndjson", csv: "text/csv; charset=utf-8", table: "text/plain; charset=utf-8", parquet: "application/vnd.apache.parquet" } as const;

/**
 * Binds POST /api/query (admin): `{"sql": "SELECT …", "format": "json"|"ndjson"|"csv"|"table"|"parquet"}`,
 * run read-only over the log in the query process, with a row limit (100,000), a size limit
 * (query_result_mb) and a time limit (query_timeout_seconds); 503 with Retry-After when the queue is full.
 */
export function bindQueryRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.post("/api/query", requireAdmin(deps), async (c) => {
    const body = await readJsonObject(c.req.raw, '{"sql":"SELECT …","format":"json"}');
    if (typeof body.sql !== "string" || body.sql.trim() === "") throw badRequest("sql: allowed: one SELECT over the view messages", { fields: { sql: "required" } });
    const format = (body.format ?? "json") as keyof typeof FORMATS;
    if (typeof format !== "string" || !Object.hasOwn(FORMATS, format)) throw badRequest(`format: ${JSON.stringify(body.format)} is not valid; allowed: ${Object.keys(FORMATS).join(", ")}`, { fields: { format: "not valid" } });
    if (format === "ndjson" || format === "csv") {
      // Streamed: rows go out as DuckDB produces them; a limit hit after the first rows ends the stream with an error line.
      const streamed = await streamQueryInWorker({ sql: body.sql, format, rowLimit: HTTP_ROW_LIMIT, ...queryLimits(deps.config, deps.store.settings), signal: c.req.raw.signal });
      if (!streamed.ok) throw new AppError(streamed.status ?? (streamed.busy ? 503 : streamed.refused ? 400 : 500), `query failed: ${streamed.error}`);
      return new Response(streamed.body, { status: 200, headers: { "Content-Type": FORMATS[format] } });
    }
    const reply = await runQueryInWorker({ sql: body.sql, format, rowLimit: HTTP_ROW_LIMIT, ...queryLimits(deps.config, deps.store.settings), signal: c.req.raw.signal });
    if (!reply.ok) throw new AppError(reply.status ?? (reply.busy ? 503 : reply.refused ? 400 : 500), `query failed: ${reply.error}`);
    const headers: Record<string, string> = { "Content-Type": FORMATS[format], "X-Switchyard-Rows": String(reply.rows) };
    if (format === "parquet") headers["Content-Disposition"] = 'attachment; filename="query.parquet"';
    return c.body(reply.body, 200, headers);
  });
}
