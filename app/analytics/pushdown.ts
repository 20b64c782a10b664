/**
 * Aggregates pushed below the view's union.
 *
 * With records waiting in the spool, the view `messages` is a UNION ALL of the
 * Parquet files and the spool's tables. DuckDB groups a union with a hash
 * aggregate over every row; over the Parquet files alone, grouped by a folder
 * the files are partitioned by (stream, date), it uses its partitioned
 * aggregate, which hardly looks at the rows: a count by stream over 10 million
 * rows took 28-33 ms through the union against 10-11 ms over the files alone.
 *
 * So a query of one simple shape is run as the same aggregate over each part,
 * combined: `SELECT stream, count(*) FROM messages WHERE w GROUP BY stream`
 * becomes `SELECT g, CAST(sum(n) AS BIGINT) FROM (SELECT stream AS g, count(*)
 * AS n FROM messages_files AS messages WHERE w GROUP BY stream UNION ALL the
 * same over messages_spool) GROUP BY g`. The shape: one SELECT over the view
 * alone (no join, CTE, subquery, window, parameter, DISTINCT or QUALIFY),
 * grouped by stream and/or date only, whose aggregates are count, sum, min
 * and max of one argument (no DISTINCT, FILTER or ORDER BY inside), with
 * WHERE, HAVING, ORDER BY and LIMIT as they come, and no current_query()
 * or constant DuckDB would write back as another (a DOUBLE such as 0.1e0).
 * Anything else runs as written. The engine also checks that the rewritten
 * statement gives the same column names (none twice) and types as the
 * original, and that no sum is of FLOAT or DOUBLE, before it uses it
 * (engine.ts, pushedDown).
 *
 * The query is read by DuckDB's own parser (json_serialize_sql) and the
 * rewritten tree written back by it (json_deserialize_sql): no SQL is parsed
 * or printed here.
 */

/**
 * The parts of the view, each a view of the same columns as `messages`
 * (engine.ts): the Parquet files and the spool's tables; and the same rows cut
 * another way, for partials: what is settled (the files, and the tables of
 * sealed segments read to their end, which no longer change) and what still
 * grows (the segment being written).
 */
export const VIEW_PARTS = ["messages_files", "messages_spool", "messages_settled", "messages_growing"] as const;

/**
 * The name the rewritten statement over a partial reads the settled part's
 * rows from (buildOver): the engine puts the name of the table holding them
 * in its place.
 */
export const SETTLED_PLACEHOLDER = "__switchyard_settled_part";

/** The columns of `messages`. */
const COLUMNS = new Set(["ts", "stream", "seq", "origin", "kind", "data", "date", "node"]);
/** The columns the Parquet files are partitioned by (their folders). */
const PARTITIONED_BY = new Set(["stream", "date"]);
/** Aggregates that combine: each part's count is summed, each part's sum, min or max taken again. */
const COMBINED: Record<string, string> = { count_star: "sum", count: "sum", sum: "sum", min: "min", max: "max" };

/** A node of DuckDB's parse tree as JSON: a plain object whose fields depend on its class. */
type Node = any;

/**
 * Longest SQL looked at. The engine remembers each text it looked at with its
 * rewrite (about twice its WHERE clause), up to 256 of them: a body of 1 MiB,
 * a long IN list, would keep about 3 MB each; and reading, rewriting and
 * writing back such a tree took longer than the query (1.5 s against 0.56 s
 * for IN with 50,000 numbers, the first time).
 */
export const MAX_PUSHDOWN_SQL = 16 * 1024;

/** True when a query may have the shape (the parser is asked only then). */
export function mayPushDown(sql: string): boolean {
  return sql.length <= MAX_PUSHDOWN_SQL && /\bgroup\s+by\b/i.test(sql) && /\bmessages\b/i.test(sql);
}

export interface Pushdown {
  /**
   * The rewritten statement as DuckDB's JSON, its columns named `names` (the
   * original's); null when two of those names are the same (in any case): the
   * rewritten statement names every column, and a name the original gives
   * one column by alias and another by default (`max(seq) AS "count_star()",
   * count(*)`) would then stand for the other in ORDER BY and HAVING.
   */
  build(names: string[]): Node | null;
  /**
   * The union of the parts alone, as DuckDB's JSON, and the positions of its
   * columns that are sums: a sum of FLOAT or DOUBLE added up part by part is
   * rounded otherwise than over the whole view (its last bits differ), so the
   * engine uses the rewritten statement only when none of them is one.
   */
  parts(): Node;
  readonly sums: number[];
  /**
   * The settled part's aggregate alone (its groups and each aggregate of the
   * part, as the union's left side computes them), as DuckDB's JSON: the
   * engine keeps its rows as a table, a partial, while the settled rows stay
   * as they are.
   */
  settled(): Node;
  /**
   * build(), with the left side of the union read from table `table` (a
   * partial: settled()'s rows kept) and the right side computed over the rows
   * that still grow; null as for build().
   */
  buildOver(names: string[], table: string): Node | null;
}

/** A name as DuckDB compares identifiers (case aside). */
export const lower = (s: unknown) => String(s ?? "").toLowerCase();
const clone = <T>(n: T): T => structuredClone(n);

function columnRef(name: string): Node {
  return { class: "COLUMN_REF", type: "COLUMN_REF", alias: "", query_location: 0, column_names: [name] };
}

function call(name: string, children: Node[]): Node {
  return {
    class: "FUNCTION", type: "FUNCTION", alias: "", query_location: 0, function_name: name, schema: "", children,
    filter: null, order_bys: { type: "ORDER_MODIFIER", orders: [] }, distinct: false, is_operator: false, export_state: false, catalog: "",
  };
}

function castToBigint(child: Node): Node {
  return { class: "CAST", type: "OPERATOR_CAST", alias: "", query_location: 0, child, cast_type: { id: "BIGINT", type_info: null }, try_cast: false };
}

/** `n` without its alias and source positions, as a key two equal expressions share. */
function keyOf(n: Node, from: string): string {
  return JSON.stringify(n, (k, v) => {
    if (k === "alias" || k === "query_location") return undefined;
    // messages.stream (or m.stream, m the view's alias) is stream
    if (v && v.class === "COLUMN_REF" && v.column_names.length === 2 && lower(v.column_names[0]) === from) {
      return { ...v, column_names: [lower(v.column_names[1])] };
    }
    if (v && v.class === "COLUMN_REF" && v.column_names.length === 1) return { ...v, column_names: [lower(v.column_names[0])] };
    return v;
  });
}

/** Sets every source position to 0 (DuckDB writes an unknown one as 2^64-1, which JSON.parse cannot keep). */
function zeroLocations(n: Node): Node {
  if (Array.isArray(n)) n.forEach(zeroLocations);
  else if (n && typeof n === "object") {
    for (const k of Object.keys(n)) {
      if (k === "query_location") n[k] = 0;
      else zeroLocations(n[k]);
    }
  }
  return n;
}

/** True when some node of the tree (an object, at any depth) passes `test`. */
export function anyNode(n: Node, test: (node: Node) => boolean): boolean {
  if (Array.isArray(n)) return n.some((c) => anyNode(c, test));
  if (!n || typeof n !== "object") return false;
  return test(n) || Object.values(n).some((c) => anyNode(c, test));
}

const NEVER = new Set(["SUBQUERY", "WINDOW", "PARAMETER", "STAR", "LAMBDA", "POSITIONAL_REFERENCE", "COLUMNS"]);
/** Functions whose value is the statement's text: the rewritten one would answer with its own. */
const OWN_TEXT = new Set(["current_query"]);

/**
 * True when the tree holds an integer JSON.parse could not keep exactly (a
 * BIGINT constant past 2^53, a HUGEINT's or a wide DECIMAL's halves): written
 * back, it would be another number. Source positions are set to 0 anyway.
 */
function inexact(n: Node): boolean {
  if (typeof n === "number") return Number.isInteger(n) && !Number.isSafeInteger(n);
  if (Array.isArray(n)) return n.some(inexact);
  if (!n || typeof n !== "object") return false;
  return Object.entries(n).some(([k, v]) => k !== "query_location" && inexact(v));
}

/** Types of constants DuckDB writes back as they were read (a DOUBLE such as 0.1e0 is written 0.1, a DECIMAL). */
const WRITTEN_AS_READ = new Set(["INTEGER", "BIGINT", "HUGEINT", "DECIMAL", "VARCHAR", "BOOLEAN", "NULL"]);

/**
 * True for a node the rewrite cannot take: one of the NEVER classes, a call
 * of an OWN_TEXT function, or a constant of a type DuckDB may write back as
 * another.
 */
function untakable(n: Node): boolean {
  if (NEVER.has(n.class)) return true;
  if (n.class === "FUNCTION") return OWN_TEXT.has(lower(n.function_name));
  return n.class === "CONSTANT" && !n.value?.is_null && !WRITTEN_AS_READ.has(n.value?.type?.id);
}

/**
 * The pushdown for `parsed` (json_serialize_sql's answer for the query), or
 * null when the query has another shape. `opaque`: lower-case names of the
 * functions that must not be taken for scalar ones (every aggregate, and
 * macros, which may hide one).
 */
export function planPushdown(parsed: Node, opaque: ReadonlySet<string>): Pushdown | null {
  if (parsed?.error !== false || parsed.statements?.length !== 1) return null;
  const statement = parsed.statements[0];
  if (statement.named_param_map?.length) return null;
  const n = statement.node;
  if (n?.type !== "SELECT_NODE" || n.cte_map?.map?.length || n.qualify || n.sample) return null;
  if (n.aggregate_handling !== "STANDARD_HANDLING" || anyNode(n, untakable) || inexact(n)) return null;
  const source = n.from_table;
  if (source?.type !== "BASE_TABLE" || lower(source.table_name) !== "messages") return null;
  if ((source.schema_name && lower(source.schema_name) !== "main") || source.catalog_name || source.sample || source.at_clause || source.column_name_alias?.length) return null;
  const from = lower(source.alias || "messages");
  const select: Node[] = n.select_list;
  // An alias that is also a column (or one of ours) would bind differently once the tree is rewritten.
  for (const item of select) {
    const alias = lower(item.alias);
    if (!alias) continue;
    if (alias.startsWith("__")) return null;
    if (COLUMNS.has(alias) && !(item.class === "COLUMN_REF" && keyOf(item, from) === keyOf(columnRef(alias), from))) return null;
  }

  // The groups: a position in the select list stands for that item; each must be stream or date.
  const groups: Node[] = [];
  for (const g of n.group_expressions ?? []) {
    let e = g;
    if (g.class === "CONSTANT") {
      const v = g.value;
      if (v?.is_null || !["INTEGER", "BIGINT"].includes(v?.type?.id) || !Number.isInteger(v.value)) return null;
      e = select[v.value - 1];
      if (!e) return null;
      e = { ...clone(e), alias: "" };
    }
    if (e.class !== "COLUMN_REF") return null;
    const names = e.column_names.map(lower);
    const column = names.length === 1 ? names[0] : names.length === 2 && names[0] === from ? names[1] : "";
    if (!PARTITIONED_BY.has(column)) return null;
    groups.push(e);
  }
  if (!groups.length) return null;
  const sets: number[][] = n.group_sets;
  if (sets?.length !== 1 || sets[0]!.length !== groups.length || !groups.every((_, i) => sets[0]!.includes(i))) return null;
  const groupKeys = groups.map((g) => keyOf(g, from));
  const explicitAliases = new Set(select.map((i) => lower(i.alias)).filter(Boolean));

  // The aggregates each part computes, and the outer tree with them replaced by their combination.
  const parts: Node[] = [];
  let failed = false;
  const rewrite = (e: Node, aliasesBind: boolean): Node => {
    if (failed || e === null) return e;
    const g = groupKeys.indexOf(keyOf({ ...e, alias: "" }, from));
    if (g >= 0) return columnRef(`__g${g}`);
    switch (e.class) {
      case "CONSTANT":
        return clone(e);
      case "COLUMN_REF":
        // ORDER BY n or HAVING n, n an alias of the select list: it binds to the outer item of that alias.
        if (aliasesBind && e.column_names.length === 1 && explicitAliases.has(lower(e.column_names[0]))) return clone(e);
        failed = true; // a column outside an aggregate that is not a group
        return e;
      case "FUNCTION": {
        const name = lower(e.function_name);
        if (e.schema || e.catalog) break;
        if (name in COMBINED) {
          if (e.distinct || e.filter || e.order_bys?.orders?.length || e.export_state) break;
          // One argument (none for count(*)): min(x, n) and max(x, n) are lists of the n least or greatest.
          if ((e.children?.length ?? 0) !== (name === "count_star" ? 0 : 1)) break;
          const k = parts.length;
          parts.push({ ...clone(e), alias: `__a${k}` });
          const combined = call(COMBINED[name]!, [columnRef(`__a${k}`)]);
          return { ...(name.startsWith("count") ? castToBigint(combined) : combined), alias: e.alias };
        }
        if (opaque.has(name) || e.filter || e.order_bys?.orders?.length) break;
        return { ...clone(e), children: e.children.map((c: Node) => rewrite(c, aliasesBind)) };
      }
      case "OPERATOR":
      case "CONJUNCTION":
        return { ...clone(e), children: e.children.map((c: Node) => rewrite(c, aliasesBind)) };
      case "COMPARISON":
        return { ...clone(e), left: rewrite(e.left, aliasesBind), right: rewrite(e.right, aliasesBind) };
      case "CAST":
        return { ...clone(e), child: rewrite(e.child, aliasesBind) };
      case "BETWEEN":
        return { ...clone(e), input: rewrite(e.input, aliasesBind), lower: rewrite(e.lower, aliasesBind), upper: rewrite(e.upper, aliasesBind) };
      case "CASE":
        return {
          ...clone(e),
          case_checks: e.case_checks.map((c: Node) => ({ when_expr: rewrite(c.when_expr, aliasesBind), then_expr: rewrite(c.then_expr, aliasesBind) })),
          else_expr: rewrite(e.else_expr, aliasesBind),
        };
    }
    failed = true;
    return e;
  };

  const outerSelect = select.map((item) => rewrite({ ...item, alias: "" }, false));
  const having = n.having ? rewrite(n.having, true) : null;
  const modifiers: Node[] = [];
  for (const m of n.modifiers ?? []) {
    if (m.type === "ORDER_MODIFIER") {
      modifiers.push({ ...clone(m), orders: m.orders.map((o: Node) => ({ ...clone(o), expression: rewrite(o.expression, true) })) });
    } else if (m.type === "LIMIT_MODIFIER") {
      modifiers.push(clone(m));
    } else {
      return null; // DISTINCT, a percentage LIMIT
    }
  }
  if (failed || !parts.length) return null;

  const sums = parts.flatMap((p, k) => (lower(p.function_name) === "sum" ? [groups.length + k] : []));
  const partSelect = (table: string): Node => ({
    type: "SELECT_NODE", modifiers: [], cte_map: { map: [] },
    select_list: [...groups.map((g, i) => ({ ...clone(g), alias: `__g${i}` })), ...parts.map(clone)],
    from_table: { ...clone(source), table_name: table, alias: source.alias || "messages", schema_name: "", catalog_name: "" },
    where_clause: clone(n.where_clause ?? null),
    group_expressions: groups.map(clone), group_sets: [groups.map((_, i) => i)],
    aggregate_handling: "STANDARD_HANDLING", having: null, sample: null, qualify: null,
  });
  /** The columns of a part (its groups, then its aggregates) as kept in table `table`. */
  const keptSelect = (table: string): Node => ({
    type: "SELECT_NODE", modifiers: [], cte_map: { map: [] },
    select_list: [...groups.map((_, i) => columnRef(`__g${i}`)), ...parts.map((_, k) => columnRef(`__a${k}`))],
    from_table: { ...clone(source), table_name: table, alias: "", schema_name: "", catalog_name: "" },
    where_clause: null, group_expressions: [], group_sets: [],
    aggregate_handling: "STANDARD_HANDLING", having: null, sample: null, qualify: null,
  });
  const union = (over?: string): Node => ({
    type: "SET_OPERATION_NODE", modifiers: [], cte_map: { map: [] }, setop_type: "UNION", setop_all: true,
    left: over ? keptSelect(over) : partSelect(VIEW_PARTS[0]),
    right: partSelect(over ? VIEW_PARTS[3] : VIEW_PARTS[1]),
  });
  const asStatement = (node: Node) => zeroLocations({ error: false, statements: [{ node, named_param_map: [] }] });
  const build = (names: string[], over?: string): Node | null => {
    if (new Set(names.map(lower)).size !== names.length) return null;
    const outer: Node = {
      type: "SELECT_NODE", modifiers: clone(modifiers), cte_map: { map: [] },
      select_list: outerSelect.map((e, i) => ({ ...clone(e), alias: names[i] })),
      from_table: {
        type: "SUBQUERY", alias: "__parts", sample: null, query_location: 0, column_name_alias: [],
        subquery: {
          node: union(over),
          named_param_map: [],
        },
      },
      where_clause: null,
      group_expressions: groups.map((_, i) => columnRef(`__g${i}`)), group_sets: [groups.map((_, i) => i)],
      aggregate_handling: "STANDARD_HANDLING", having: clone(having), sample: null, qualify: null,
    };
    return asStatement(outer);
  };
  return {
    sums,
    parts: () => asStatement(union()),
    settled: () => asStatement(partSelect(VIEW_PARTS[2])),
    buildOver: (names: string[], table: string) => build(names, table),
    build(names: string[]): Node | null {
      return build(names);
    },
  };
}
