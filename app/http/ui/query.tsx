import type { Hono } from "hono";
import { bodyText, runQueryInWorker } from "../../analytics/run-query.ts";
import { QueryPage, QueryResult, EXAMPLES } from "../../../views/query.tsx";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { HTTP_ROW_LIMIT, queryLimits } from "../../analytics/limits.ts";
import { chartOf } from "./chart.ts";
import { formFields } from "./support.ts";

/** Rows shown in the table (a query may return HTTP_ROW_LIMIT, as in the API). */
const SHOWN = 1000;

/** Binds /admin/query: the SQL console (table, chart), and CSV/Parquet downloads. */
export function bindQueryPage(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/admin/query", (c) => c.html(<QueryPage sql={c.req.query("sql") ?? EXAMPLES[1]!.sql} />));

  app.post("/admin/query", async (c) => {
    const { sql = "" } = await formFields(c);
    if (sql.trim() === "") return c.html(<QueryResult sql={sql} error="write a query first: one SELECT over the view messages" />, 422);
    const started = performance.now();
    const reply = await runQueryInWorker({ sql, format: "grid", rowLimit: HTTP_ROW_LIMIT, ...queryLimits(deps.config, deps.store.settings), signal: c.req.raw.signal });
    if (!reply.ok) return c.html(<QueryResult sql={sql} error={`query failed: ${reply.error}`} />, reply.busy ? 503 : 422);
    const grid = JSON.parse(bodyText(reply.body)) as { columns: string[]; types: string[]; rows: unknown[][] };
    const table = { columns: grid.columns, rows: grid.rows.slice(0, SHOWN), total: grid.rows.length, truncated: grid.rows.length > SHOWN, ms: Math.round(performance.now() - started) };
    return c.html(<QueryResult sql={sql} table={table} chart={chartOf(grid.columns, grid.types, grid.rows)} />);
  });

  app.post("/admin/query/download", async (c) => {
    const { sql = "", format = "csv" } = await formFields(c);
    if (format !== "csv" && format !== "parquet") return c.text(`format: ${JSON.stringify(format)} is not valid; allowed: csv, parquet`, 400);
    if (sql.trim() === "") return c.text("sql: write a query first: one SELECT over the view messages", 400);
    const reply = await runQueryInWorker({ sql, format, rowLimit: HTTP_ROW_LIMIT, ...queryLimits(deps.config, deps.store.settings), signal: c.req.raw.signal });
    if (!reply.ok) return c.text(`query failed: ${reply.error}`, reply.busy ? 503 : 400);
    const type = format === "csv" ? "text/csv; charset=utf-8" : "application/vnd.apache.parquet";
    return c.body(reply.body, 200, { "Content-Type": type, "Content-Disposition": `attachment; filename="query.${format}"` });
  });
}
