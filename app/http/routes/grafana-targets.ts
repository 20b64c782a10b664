import { badRequest } from "../../core/errors.ts";
import { streamNameProblem } from "../../core/stream-name.ts";

/** A numeric field of a stream's JSON messages: a top-level key. */
export const FIELD = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** The most series one Grafana /query may ask for (each is one query): more is a 400. */
export const MAX_SERIES = 100;

/** One series a target asks for: a stream (message count) or a stream's JSON field (its average). */
export interface Series {
  stream: string;
  field: string | null;
  /** The name the answer carries: `stream` or `stream:field`. */
  name: string;
}

/**
 * The values of one part of a target as Grafana formats template variables:
 * `(a|b)` (regex format, the JSON plugins' default), `{a,b}` (glob/CSV), or one
 * value; regex escapes (`spin\.30`) are undone.
 */
export function expandValues(part: string): string[] {
  let values = [part];
  const regex = /^\((.*)\)$/s.exec(part);
  const glob = /^\{(.*)\}$/s.exec(part);
  if (regex) values = regex[1]!.split(/(?<!\\)\|/);
  else if (glob) values = glob[1]!.split(",");
  return values.map((v) => v.trim().replace(/\\(.)/g, "$1"));
}

/**
 * Parses a target `stream` or `stream:field`, each part one value or several
 * (`(spin30|spin31):rpm`, `spin30:{rpm,v}`), into the series it names. Throws a
 * 400 AppError that says what is wrong and what is allowed.
 */
export function parseTarget(target: unknown): Series[] {
  if (typeof target !== "string" || target === "") throw badRequest("target: allowed: a stream name, or stream:field (each may be a multi-value variable such as (spin30|spin31))");
  const i = target.lastIndexOf(":");
  const streams = expandValues(i > 0 ? target.slice(0, i) : target);
  const fields = i > 0 ? expandValues(target.slice(i + 1)) : [null];
  if (streams.length * fields.length > MAX_SERIES) {
    throw badRequest(`target ${JSON.stringify(target.length > 80 ? `${target.slice(0, 80)}…` : target)} names ${streams.length * fields.length} series (${streams.length} streams × ${fields.length} fields); allowed: at most ${MAX_SERIES} series per request (each is one query)`);
  }
  const out = new Map<string, Series>();
  for (const stream of streams) {
    const problem = streamNameProblem(stream);
    if (problem) throw badRequest(`target ${JSON.stringify(target)}: ${problem}`);
    for (const field of fields) {
      if (field !== null && !FIELD.test(field)) throw badRequest(`target ${JSON.stringify(target)}: field ${JSON.stringify(field)} is not valid; allowed: [A-Za-z_][A-Za-z0-9_]*`);
      const name = field === null ? stream : `${stream}:${field}`;
      out.set(name, { stream, field, name });
    }
  }
  return [...out.values()];
}

/** An ad hoc filter as Grafana sends it. */
export interface AdhocFilter {
  key: string;
  operator: string;
  value: string;
}

/** Keys ad hoc filters may use (columns of the messages view), as /tag-keys lists them. */
export const TAG_KEYS = ["origin", "kind"] as const;
const OPERATORS: Record<string, (col: string, p: string) => string> = {
  "=": (col, p) => `${col} = ${p}`,
  "!=": (col, p) => `${col} <> ${p}`,
  "=~": (col, p) => `regexp_matches(${col}, ${p})`,
  "!~": (col, p) => `NOT regexp_matches(${col}, ${p})`,
};

/**
 * SQL conditions for Grafana's ad hoc filters, with their values added to
 * `params` (never pasted into the SQL). Throws a 400 AppError for a key or
 * operator that is not allowed.
 */
export function adhocConditions(filters: unknown, params: (string | number)[]): string[] {
  if (filters === undefined || filters === null) return [];
  if (!Array.isArray(filters)) throw badRequest("adhocFilters: allowed: a list of {key, operator, value}");
  return filters.map((f: Partial<AdhocFilter>) => {
    if (!TAG_KEYS.includes(f?.key as (typeof TAG_KEYS)[number])) throw badRequest(`adhocFilters: key ${JSON.stringify(f?.key)} is not valid; allowed: ${TAG_KEYS.join(", ")}`);
    const op = OPERATORS[String(f.operator)];
    if (!op) throw badRequest(`adhocFilters: operator ${JSON.stringify(f.operator)} is not valid; allowed: ${Object.keys(OPERATORS).join(" ")}`);
    params.push(String(f.value ?? ""));
    return op(f.key!, `$${params.length}`);
  });
}

/** DuckDB column types whose values the JSON result carries as strings, and that are exact as JSON numbers when safe. */
const INTEGER_TYPES = /^(BIGINT|UBIGINT|HUGEINT|UHUGEINT|INT64|UINT64|INT128)$/i;
const DECIMAL_TYPE = /^DECIMAL\((\d+),\s*(\d+)\)$/i;

/**
 * One cell of a query result as Infinity should see it: integers that fit a
 * double exactly and decimals of at most 15 digits become JSON numbers; values
 * that would lose digits stay strings.
 */
export function exactNumber(value: unknown, type: string): unknown {
  if (typeof value !== "string") return value;
  if (INTEGER_TYPES.test(type)) {
    const n = Number(value);
    return /^-?\d+$/.test(value) && Number.isSafeInteger(n) ? n : value;
  }
  const d = DECIMAL_TYPE.exec(type);
  if (d && Number(d[1]) <= 15) {
    const n = Number(value);
    return Number.isFinite(n) ? n : value;
  }
  return value;
}
