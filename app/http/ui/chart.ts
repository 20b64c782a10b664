import type { ChartSpec } from "../../../views/query.tsx";

const NUMERIC = /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|REAL|DECIMAL.*)$/;
const TIME = /^(TIMESTAMP.*|DATE)$/;
const TEXT = /^VARCHAR$/;
/** Most points drawn per series (longer results are thinned evenly). */
const MAX_POINTS = 5000;
/** Most series (category values × numeric columns). */
const MAX_SERIES = 12;

/** Seconds since the epoch (fraction kept to the microsecond) of a DuckDB timestamp or date as JSON gives it, or null. */
function seconds(v: unknown): number | null {
  if (typeof v !== "string") return null;
  const m = /^(\d{4}-\d\d-\d\d)(?:[ T](\d\d:\d\d:\d\d)(\.\d+)?)?\s*(Z|[+-]\d\d(?::?\d\d)?)?$/.exec(v.trim());
  if (!m) return null;
  const zone = m[4] ? (m[4] === "Z" ? "Z" : m[4].length === 3 ? `${m[4]}:00` : m[4].replace(/^([+-]\d\d)(\d\d)$/, "$1:$2")) : "Z";
  const ms = Date.parse(`${m[1]}T${m[2] ?? "00:00:00"}${zone}`);
  return Number.isNaN(ms) ? null : ms / 1000 + (m[3] ? Number(m[3]) : 0);
}

function number(v: unknown): number | null {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v.trim() !== "" && !Number.isNaN(Number(v))) return Number(v);
  return null;
}

/**
 * A time-series chart of a result, when it has a time column and numeric ones:
 * one series per numeric column, split by the first text column when that has at
 * most 12 values (e.g. messages per minute per stream). Null when it has no such shape.
 */
export function chartOf(columns: string[], types: string[], rows: unknown[][]): ChartSpec | null {
  const ti = types.findIndex((t) => TIME.test(t));
  if (ti < 0 || rows.length < 2) return null;
  const nums = types.map((t, i) => (NUMERIC.test(t) && i !== ti ? i : -1)).filter((i) => i >= 0);
  if (nums.length === 0) return null;
  const ci = types.findIndex((t, i) => TEXT.test(t) && i !== ti);
  const categories = ci >= 0 ? [...new Set(rows.map((r) => String(r[ci])))] : [""];
  if (categories.length * nums.length > MAX_SERIES) return null;
  const times = [...new Set(rows.map((r) => seconds(r[ti])).filter((s): s is number => s !== null))].sort((a, b) => a - b);
  if (times.length < 2) return null;
  const step = Math.max(1, Math.ceil(times.length / MAX_POINTS));
  const x = times.filter((_, i) => i % step === 0);
  const at = new Map(x.map((t, i) => [t, i]));
  const series = categories.flatMap((cat) =>
    nums.map((ni) => ({ label: [ci >= 0 ? cat : "", columns[ni]].filter(Boolean).join(" "), values: new Array<number | null>(x.length).fill(null) })),
  );
  for (const r of rows) {
    const t = seconds(r[ti]);
    const i = t === null ? undefined : at.get(t);
    if (i === undefined) continue;
    const c = ci >= 0 ? categories.indexOf(String(r[ci])) : 0;
    nums.forEach((ni, k) => {
      series[c * nums.length + k]!.values[i] = number(r[ni]);
    });
  }
  return { time: columns[ti]!, x, series };
}
