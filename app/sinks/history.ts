import { queryLimits } from "../analytics/limits.ts";
import { streamQueryInWorker } from "../analytics/run-query.ts";
import type { Settings } from "../config/settings.ts";
import type { Message } from "../core/message.ts";

/** What reading a stream's history from the durable log needs. */
export interface LogReaderDeps {
  dataDir: string;
  /** This node's id (the log's `node` column). */
  nodeId: string;
  settings: () => Settings;
}

/** The log could not be read (the query engine failed or refused): the reason says why. */
export class LogReadError extends Error {}

/** Rows per query when reading the log page by page: each page is one short query in the query process. */
export const LOG_PAGE_ROWS = 10_000;

/** How long to wait before asking again when every query slot is taken. */
const BUSY_RETRY_MS = 250;

type Row = { ts: string | number; seq: string | number; origin: string; kind: string; data: string };

function rowMessage(stream: string, r: Row): Message {
  const data = r.kind === "binary" ? new Uint8Array(Buffer.from(r.data, "base64")) : r.data;
  return { stream, ts: Number(r.ts), seq: Number(r.seq), origin: r.origin, data, size: typeof data === "string" ? Buffer.byteLength(data) : data.byteLength };
}

/** Options of a log read: who asks (query slots are shared fairly per client) and when to stop. */
export interface LogReadOptions {
  /** Query-pool client key (e.g. `replay:<address>`): one client may hold `query_per_client` slots at most. */
  client?: string;
  /** Checked between rows: true stops the read (the reader went away). */
  stopped?: () => boolean;
}

/**
 * Runs one query through the query process pool and yields its NDJSON rows as
 * they arrive, chunk by chunk: the query process sends its next chunk only when
 * this generator is pulled again, so a slow consumer holds the query, not memory.
 * Waits and asks again while every query slot is busy.
 */
export async function* queryRows(deps: LogReaderDeps, sql: string, params: (string | number)[], rowLimit: number, opts: LogReadOptions): AsyncGenerator<Record<string, unknown>> {
  for (;;) {
    const reply = await streamQueryInWorker({ sql, params, format: "ndjson", rowLimit, ...queryLimits(deps, deps.settings()), client: opts.client });
    if (!reply.ok) {
      if (reply.busy && !opts.stopped?.()) {
        await Bun.sleep(BUSY_RETRY_MS);
        continue;
      }
      if (opts.stopped?.()) return;
      throw new LogReadError(logReadProblem(reply.error, deps.settings()));
    }
    const reader = reply.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        // Whole lines of this chunk, the unfinished last one kept for the next.
        const lines = (pending + decoder.decode(value, { stream: true })).split("\n");
        pending = lines.pop()!;
        for (const line of lines) {
          if (line === "") continue;
          const row = JSON.parse(line) as Record<string, unknown>;
          if (typeof row.error === "string" && row.seq === undefined) throw new LogReadError(logReadProblem(row.error, deps.settings()));
          yield row;
          if (opts.stopped?.()) return;
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    return;
  }
}

/** Most payload text one log page gathers (at least one message is always read). */
export const LOG_PAGE_BYTES = 4 * 1024 * 1024;
/** What a row of a page counts besides its payload and origin: its other fields and their names as JSON. */
export const ROW_COST = 100;

/**
 * The payload one log page may gather under `settings`: LOG_PAGE_BYTES, or less
 * where query_result_mb would not hold that much: an eighth of it, for a
 * payload's byte may take up to 6 in the answer's JSON (\u0001). A page of 4
 * MiB, or of 10,000 small messages (1.2 MB as JSON), failed every read and
 * replay at query_result_mb 1. A page ends within it (pageSql), so only a page
 * of one message can be past query_result_mb: one message too big to read.
 */
export function logPageBytes(settings: Settings): number {
  return Math.min(LOG_PAGE_BYTES, Math.floor((settings.query_result_mb * 1048576) / 8));
}

/**
 * Why reading the log failed, for its reader: a message whose answer alone is
 * past query_result_mb (a page always holds one) cannot be read back at that
 * setting; the query's own words (select fewer columns, add a LIMIT) do not
 * apply to a page of history.
 */
export function logReadProblem(error: string, settings: Settings): string {
  if (!error.includes("(query_result_mb)")) return `reading the log failed: ${error}`;
  return `reading the log failed: a message there is larger than one answer may be (query_result_mb ${settings.query_result_mb}); raise query_result_mb to read it`;
}

/**
 * One page of a stream's history from the durable log (Parquet and the spool not
 * yet compacted, through the query process's `messages` view): the messages with
 * seq > `afterSeq`, oldest first, at most `rows` of them and about
 * LOG_PAGE_BYTES of payload. Read whole and at once, so the query holds its slot
 * only as long as DuckDB needs, never while a slow reader takes the page.
 */
export async function readLogPage(deps: LogReaderDeps, stream: string, afterSeq: number, rows = LOG_PAGE_ROWS, opts: LogReadOptions = {}): Promise<Message[]> {
  // Seqs rarely skip, so the next `rows` seqs are asked first: a range DuckDB prunes by its
  // min/max statistics (Parquet row groups, the spool tables' zone maps) instead of sorting the
  // whole rest of the stream for every page. Nothing in that range: the open-ended query finds
  // the next message, wherever it is (after a gap).
  const page = await readRange(deps, stream, afterSeq, afterSeq + rows, rows, opts);
  return page.length > 0 ? page : readRange(deps, stream, afterSeq, null, rows, opts);
}

async function readRange(deps: LogReaderDeps, stream: string, afterSeq: number, upTo: number | null, rows: number, opts: LogReadOptions): Promise<Message[]> {
  const params: (string | number)[] = [stream, afterSeq];
  if (upTo !== null) params.push(upTo);
  const sql = pageSql(`stream = $1 AND seq > $2::BIGINT${upTo !== null ? " AND seq <= $3::BIGINT" : ""}`, rows, logPageBytes(deps.settings()));
  const out: Message[] = [];
  for await (const r of queryRows(deps, sql, params, rows, opts)) out.push(rowMessage(stream, r as Row));
  return out;
}

/**
 * The SQL of one page of a stream's messages from the log: at most `rows` of
 * those matching `where`, the oldest (or with `newest`, the newest), as many
 * as end within `bytes` (UTF-8 bytes of payload and origin, and ROW_COST, each;
 * at least one message), oldest first, as columns
 * ts (µs), seq, origin, kind, data, and `matched`: how many matched up to
 * `rows`, before the cut (more than the page's rows: it was cut). The page's
 * edge is worked out from the payloads' lengths alone, and only then are the
 * payloads read: sorting `rows` whole payloads (up to 10,000 of up to
 * max_message_bytes) to keep a few MiB of them ran DuckDB out of its memory
 * for 40 messages of 1 MB.
 */
export function pageSql(where: string, rows: number, bytes: number, newest = false): string {
  const dir = newest ? "DESC" : "";
  return `WITH lengths AS (SELECT seq, strlen(data) + strlen(origin) + ${ROW_COST} AS len FROM messages WHERE ${where} ORDER BY seq ${dir} LIMIT ${rows}),
      edge AS (SELECT ${newest ? "min" : "max"}(seq) FILTER (WHERE upto <= ${bytes} OR upto = len) AS seq, count(*) AS matched FROM (SELECT seq, len, sum(len) OVER (ORDER BY seq ${dir} ROWS UNBOUNDED PRECEDING) AS upto FROM lengths))
    SELECT * FROM (SELECT epoch_us(ts) AS ts, seq, origin, kind, data, (SELECT matched FROM edge) AS matched FROM messages
      WHERE ${where} AND seq ${newest ? ">=" : "<="} (SELECT seq FROM edge) ORDER BY seq ${dir} LIMIT ${rows}) ORDER BY seq`;
}

/**
 * Every message of `stream` in the durable log with seq > `afterSeq`, oldest
 * first, page by page, until the log has no more. The next page is read only
 * when the consumer has taken this one (backpressure), so a long history never
 * sits in memory: for subscribers that resume and, later, relay destinations
 * that forward a backlog.
 */
export async function* readLogAfter(deps: LogReaderDeps, stream: string, afterSeq: number, opts: LogReadOptions = {}): AsyncGenerator<Message> {
  let last = afterSeq;
  for (;;) {
    const page = await readLogPage(deps, stream, last, LOG_PAGE_ROWS, opts);
    for (const m of page) {
      last = m.seq;
      yield m;
      if (opts.stopped?.()) return;
    }
    if (page.length === 0 || opts.stopped?.()) return;
  }
}

/**
 * Where a `since` replay starts in the log: the seq before the first message of
 * `stream` received after `sinceUs`, or null when the log holds none.
 */
export async function logSeqBefore(deps: LogReaderDeps, stream: string, sinceUs: number, opts: LogReadOptions = {}): Promise<number | null> {
  const sql = "SELECT min(seq) AS first FROM messages WHERE stream = $1 AND ts > make_timestamp($2::BIGINT)";
  for await (const r of queryRows(deps, sql, [stream, sinceUs], 1, opts)) return r.first === null || r.first === undefined ? null : Number(r.first) - 1;
  return null;
}
