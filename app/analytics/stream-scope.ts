/**
 * The streams a query reads, for the refresh it may skip.
 *
 * Before a query runs, the engine reads what the spool gained since the last
 * read (engine.ts, refresh): during heavy ingest that is thousands of records,
 * a dozen milliseconds of a point lookup's time. A query whose every read of
 * the view is filtered on named streams (`WHERE stream = 'spin7' AND …`,
 * `stream IN ('a', 'b')`, `stream = $1`) gets the same answer whether or not
 * records of other streams are read first: the engine then only looks at the
 * unread records' stream names, and skips the read when none is one of these
 * (QueryEngine.quietFor).
 *
 * The query is read by DuckDB's own parser (json_serialize_sql). The scope is
 * taken only when every table the statement reads is the view `messages` or a
 * CTE of the statement, and every SELECT reading the view directly (not
 * through a join) has, among the conditions its WHERE joins with AND, one
 * that pins `stream` to constants or parameters: an equality or an IN list.
 * Anything else (a join with the view, a sample, which DuckDB takes before
 * the WHERE, the view's columns renamed by an alias list, a table function,
 * another table, a CTE's name outside the query whose WITH gives it, OR, a
 * cast or collation around either side) has no scope, and is refreshed as
 * before. The streams of a CTE's SELECT count too: a scope may be wider than
 * what the query keeps, never narrower.
 */

import { anyNode, lower, MAX_PUSHDOWN_SQL } from "./pushdown.ts";

/** A node of DuckDB's parse tree as JSON: a plain object whose fields depend on its class. */
type Node = any;

/** The streams named as constants, and the (1-based) parameters that name more. */
export interface StreamScope {
  literals: string[];
  params: number[];
}

/** True when a query may have a scope (the parser is asked only then; no longer SQL than for the pushdown: the parse is remembered per text). */
export function mayHaveScope(sql: string): boolean {
  return sql.length <= MAX_PUSHDOWN_SQL && /\bstream\b/i.test(sql) && /\bmessages\b/i.test(sql);
}

/** Table references a SELECT may read without losing its scope (a BASE_TABLE is looked at by name). */
const HARMLESS_REFS = new Set(["EMPTY", "EXPRESSION_LIST", "SUBQUERY"]);

/**
 * The scope of `parsed` (json_serialize_sql's answer for the query), or null
 * when some read of the view is not pinned to named streams.
 */
export function planStreamScope(parsed: Node): StreamScope | null {
  if (parsed?.error !== false || parsed.statements?.length !== 1) return null;
  const statement = parsed.statements[0];
  const paramIndex = new Map<string, number>();
  for (const p of statement.named_param_map ?? []) paramIndex.set(String(p.key), Number(p.value));
  const scope: StreamScope = { literals: [], params: [] };
  /** Table references looked at from their SELECT or join: any other is unknown ground. */
  const looked = new Set<Node>();
  let ok = true;
  /** `r`, a SELECT's FROM (`where`: its WHERE) or a side of a join in one, with the CTE names `ctes` visible there. */
  const ref = (r: Node, where: Node | undefined, from: "select" | "join", ctes: ReadonlySet<string>) => {
    looked.add(r);
    if (r?.type === "JOIN") {
      ref(r.left, undefined, "join", ctes);
      ref(r.right, undefined, "join", ctes);
      return;
    }
    if (r?.type === "BASE_TABLE") {
      const name = lower(r.table_name);
      const plain = !r.schema_name && !r.catalog_name && !r.at_clause;
      // A CTE of an enclosing query: its own reads of the view are looked at where they are. One named
      // messages is taken for the view.
      if (plain && ctes.has(name) && name !== "messages") return;
      // The view alone, as it is: in a join, sampled (before the WHERE), or with its columns renamed
      // (`messages AS m(a, stream)` names another column stream), the WHERE may not pin what it reads.
      if (name !== "messages" || (r.schema_name && lower(r.schema_name) !== "main") || r.catalog_name || r.at_clause || r.sample || r.column_name_alias?.length || from === "join") {
        ok = false;
        return;
      }
      const pinned = streamsPinned(where, lower(r.alias || "messages"), paramIndex);
      if (!pinned) {
        ok = false;
        return;
      }
      scope.literals.push(...pinned.literals);
      scope.params.push(...pinned.params);
      return;
    }
    if (!HARMLESS_REFS.has(r?.type)) ok = false;
  };
  /**
   * Every node below `n`, with the CTE names visible there: a WITH's names in
   * the query it belongs to, each CTE's body seeing those before it and itself
   * (a recursive one reads itself), never a query outside it.
   */
  const visit = (n: Node, ctes: ReadonlySet<string>) => {
    if (Array.isArray(n)) {
      for (const c of n) visit(c, ctes);
      return;
    }
    if (!ok || !n || typeof n !== "object") return;
    // Sampled rows are picked before the WHERE: other streams' rows change which are kept.
    if (n.sample) ok = false;
    let inside = ctes;
    for (const e of n.cte_map?.map ?? []) {
      inside = new Set([...inside, lower(e.key)]);
      visit(e.value, inside);
    }
    if (n.type === "SELECT_NODE") ref(n.from_table, n.where_clause, "select", inside);
    for (const [k, c] of Object.entries(n)) if (k !== "cte_map") visit(c, inside);
  };
  visit(statement.node, new Set());
  // A table read from anywhere else (a PIVOT's source, say) was not looked at: no scope.
  if (anyNode(statement.node, (n) => ["BASE_TABLE", "TABLE_FUNCTION", "JOIN"].includes(n.type) && !looked.has(n))) return null;
  if (!ok || (!scope.literals.length && !scope.params.length)) return null;
  return { literals: [...new Set(scope.literals)], params: [...new Set(scope.params)] };
}

/** The streams of `scope` with `params` bound (each parameter it names must be a string), or null. */
export function scopeStreams(scope: StreamScope, params?: readonly unknown[]): Set<string> | null {
  const streams = new Set(scope.literals);
  for (const i of scope.params) {
    const v = params?.[i - 1];
    if (typeof v !== "string") return null;
    streams.add(v);
  }
  return streams;
}

/**
 * The streams the conditions `where` joins with AND pin the view's `stream`
 * column to (`from`: the view's name or alias in that SELECT), or null.
 */
function streamsPinned(where: Node, from: string, paramIndex: Map<string, number>): StreamScope | null {
  const conjuncts: Node[] = [];
  const flatten = (e: Node) => {
    if (e?.class === "CONJUNCTION" && e.type === "CONJUNCTION_AND") e.children.forEach(flatten);
    else if (e) conjuncts.push(e);
  };
  flatten(where);
  const isStream = (e: Node) => {
    if (e?.class !== "COLUMN_REF") return false;
    const names = (e.column_names as string[]).map(lower);
    return (names.length === 1 && names[0] === "stream") || (names.length === 2 && names[0] === from && names[1] === "stream");
  };
  /** A constant string, or a parameter, added to `into`; false for anything else. */
  const value = (e: Node, into: StreamScope) => {
    if (e?.class === "CONSTANT" && !e.value?.is_null && e.value?.type?.id === "VARCHAR" && typeof e.value.value === "string") {
      into.literals.push(e.value.value);
      return true;
    }
    if (e?.class === "PARAMETER" && paramIndex.has(String(e.identifier))) {
      into.params.push(paramIndex.get(String(e.identifier))!);
      return true;
    }
    return false;
  };
  for (const c of conjuncts) {
    const into: StreamScope = { literals: [], params: [] };
    if (c.class === "COMPARISON" && c.type === "COMPARE_EQUAL") {
      if ((isStream(c.left) && value(c.right, into)) || (isStream(c.right) && value(c.left, into))) return into;
    } else if (c.class === "OPERATOR" && c.type === "COMPARE_IN" && isStream(c.children?.[0])) {
      if (c.children.length > 1 && c.children.slice(1).every((v: Node) => value(v, into))) return into;
    }
  }
  return null;
}
