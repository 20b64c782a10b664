import type { FC } from "hono/jsx";
import { Layout, Notice } from "./layout.tsx";

/** Example queries over the `messages` view, offered as links that fill the box. */
export const EXAMPLES: { title: string; sql: string }[] = [
  { title: "Latest messages", sql: "SELECT ts, stream, seq, origin, data FROM messages ORDER BY ts DESC LIMIT 50" },
  { title: "Messages per stream", sql: "SELECT stream, count(*) AS messages, min(ts) AS first, max(ts) AS last FROM messages GROUP BY stream ORDER BY messages DESC" },
  { title: "Rate per minute (chart)", sql: "SELECT time_bucket(INTERVAL 1 minute, ts) AS minute, stream, count(*) AS messages FROM messages WHERE ts > now() - INTERVAL 1 hour GROUP BY ALL ORDER BY minute" },
  { title: "A JSON field over time (chart)", sql: "SELECT ts, CAST(json_extract(data, '$.value') AS DOUBLE) AS value FROM messages WHERE stream = 'demo' AND kind = 'text' ORDER BY ts DESC LIMIT 1000" },
];

export interface QueryTable {
  columns: string[];
  rows: unknown[][];
  total: number;
  truncated: boolean;
  ms: number;
}

export interface ChartSpec {
  time: string;
  x: number[];
  series: { label: string; values: (number | null)[] }[];
}

/** A query's answer: chart (when it has a time column and numbers), table, downloads. */
export const QueryResult: FC<{ sql: string; table?: QueryTable; chart?: ChartSpec | null; error?: string }> = ({ sql, table, chart, error }) => {
  if (error) return <div id="query-error"><Notice kind="bad" text={error} /></div>;
  if (!table) return null;
  return (
    <section class="card" id="query-table">
      <div class="row" style="justify-content:space-between">
        <p class="small muted" id="query-summary">{table.total} row(s){table.truncated ? `, the first ${table.rows.length} shown` : ""} in {table.ms} ms</p>
        <form method="post" action="/admin/query/download" class="row">
          <input type="hidden" name="sql" value={sql} />
          <button type="submit" class="secondary" name="format" value="csv">Download CSV</button>
          <button type="submit" class="secondary" name="format" value="parquet">Download Parquet</button>
        </form>
      </div>
      {chart && (
        <div class="chart" data-chart id="query-chart">
          <script type="application/json" dangerouslySetInnerHTML={{ __html: JSON.stringify(chart).replace(/</g, "\\u003c") }} />
        </div>
      )}
      {table.rows.length === 0 ? <div class="empty">The query answered no rows.</div> : (
        <div class="scroll">
          <table>
            <thead><tr>{table.columns.map((c) => <th>{c}</th>)}</tr></thead>
            <tbody>
              {table.rows.map((r) => <tr>{r.map((v) => <td class="mono small">{v === null ? <span class="muted">NULL</span> : typeof v === "object" ? JSON.stringify(v) : String(v)}</td>)}</tr>)}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
};

export const QueryPage: FC<{ sql: string }> = ({ sql }) => (
  <Layout title="Query" active="query" head={<><link rel="stylesheet" href="/admin/assets/uPlot.min.css" /><script src="/admin/assets/uPlot.iife.min.js" defer></script></>}>
    <h1>Query</h1>
    <section class="card">
      <form class="stack" style="max-width:none" method="post" action="/admin/query" hx-post="/admin/query" hx-target="#query-result" hx-indicator="#query-running">
        <label>
          SQL over the view <code>messages</code> (ts, stream, seq, origin, kind, data, date)
          <textarea name="sql" rows={6} required spellcheck={false}>{sql}</textarea>
          <span class="help">one SELECT, read-only; at most 100,000 rows; stopped after the query time limit (Settings)</span>
        </label>
        <div class="row">
          <button type="submit">Run</button>
          <span id="query-running" class="htmx-indicator small muted">running…</span>
        </div>
      </form>
      <p class="small">Examples: {EXAMPLES.map((e, i) => <>{i > 0 && " · "}<a href={`/admin/query?sql=${encodeURIComponent(e.sql)}`}>{e.title}</a></>)}</p>
    </section>
    <div id="query-result" aria-live="polite"></div>
  </Layout>
);
