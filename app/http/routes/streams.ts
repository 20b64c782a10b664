import type { Context, Hono } from "hono";
import { AppError, badRequest, notFound } from "../../core/errors.ts";
import { queryLimits } from "../../analytics/limits.ts";
import { timedOut } from "../../analytics/protocol.ts";
import { bodyText, runQueryInWorker } from "../../analytics/run-query.ts";
import type { Message } from "../../core/message.ts";
import { streamNameProblem } from "../../core/stream-name.ts";
import { streamStats } from "../../hub/stream-state.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { EVENTS, MESSAGES, PREFIX, streamFromPath } from "../stream-path.ts";
import { envelopeJson, gapJson, parseReplayRequest, parseTime, ReplayParamError, type ReplayRequest } from "../../sinks/replay.ts";
import { logPageBytes, logReadProblem, pageSql, ROW_COST } from "../../sinks/history.ts";
import { remoteAddress, requireStreamGrant, streamVisibility } from "../stream-access.ts";
import { clusterWaitProblem, nodeStatus, sharedClusterView, standaloneView } from "../../cluster/status.ts";
import { VERSION } from "../../version.ts";

/** Parses a time (ISO 8601, or microseconds since the epoch) into µs: the same rule as the websocket's `since`. */
function parseSince(text: string | undefined, name: string): number | undefined {
  if (text === undefined || text === "") return undefined;
  try {
    return parseTime(name, text);
  } catch (err) {
    if (err instanceof ReplayParamError) throw badRequest(err.message);
    throw err;
  }
}

function parseCount(name: string, text: string | undefined, fallback: number | undefined, min: number, max: number): number | undefined {
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw badRequest(`${name}: ${JSON.stringify(text)} is not valid; allowed: a whole number from ${min} to ${max}`);
  return n;
}

/** Most messages one answer of GET …/messages holds. */
const MAX_LIMIT = 10_000;

/**
 * GET /api/streams/{name}/messages?limit|last&since&until&after_seq&source: a
 * stream's messages, oldest first. With after_seq, the first `limit` after it
 * (a resume point: page on with `next_after_seq` while `more`); without, the
 * latest `limit` (or `last`). From memory when it holds the whole answer, else
 * from the log (Parquet and the spool, through the query process).
 */
async function recentMessages(c: Context<HttpEnv>, deps: HttpDeps) {
  const name = streamFromPath(c.req.url, MESSAGES);
  const problem = streamNameProblem(name);
  if (problem) throw badRequest(problem);
  await requireStreamGrant(c, deps, name, "read");
  const lastText = c.req.query("last");
  if (lastText !== undefined && c.req.query("limit") !== undefined) throw badRequest("limit and last cannot be combined; last=N is the latest N messages, limit=N the most one answer holds");
  const afterSeq = parseCount("after_seq", c.req.query("after_seq"), undefined, 0, Number.MAX_SAFE_INTEGER);
  if (lastText !== undefined && afterSeq !== undefined) throw badRequest("after_seq and last cannot be combined; give one starting point: after_seq (a seq) or last (a count)");
  const limit = lastText !== undefined ? parseCount("last", lastText, 100, 1, MAX_LIMIT)! : parseCount("limit", c.req.query("limit"), 100, 1, MAX_LIMIT)!;
  const since = parseSince(c.req.query("since"), "since");
  const until = parseSince(c.req.query("until"), "until");
  const source = c.req.query("source") ?? "auto";
  if (!["auto", "memory", "log"].includes(source)) throw badRequest(`source: ${JSON.stringify(source)} is not valid; allowed: auto, memory, log`);
  const forward = afterSeq !== undefined;
  if (forward) {
    const problem = deps.followers.startProblem(name, { afterSeq });
    if (problem) throw badRequest(problem);
  }
  // Memory answers when it holds the whole answer: with after_seq, everything from after_seq + 1 on;
  // else `limit` messages, or everything back to the stream's first message or to `since`. Otherwise
  // (or with until, or source=log) the log answers.
  let inMemory: Message[] | null = null;
  let complete = false;
  if (source !== "log" && until === undefined) {
    if (forward) {
      // Memory holds every message after after_seq, or only the later part of them (then the log answers).
      const after = deps.recent.after(name, afterSeq, Number.MAX_SAFE_INTEGER);
      complete = after !== null;
      const kept = after ?? deps.recent.query(name, { limit: Number.MAX_SAFE_INTEGER, since, afterSeq });
      inMemory = kept && kept.filter((m) => since === undefined || m.ts > since).slice(0, limit);
    } else {
      inMemory = deps.recent.query(name, { limit, since });
      const oldest = deps.recent.oldest(name);
      complete = inMemory !== null && oldest !== null && (inMemory.length === limit || oldest.seq === 1 || (since !== undefined && oldest.ts <= since));
    }
  }
  if (source === "memory" && inMemory === null) throw notFound(`no messages are kept in memory for stream ${JSON.stringify(name)}; ask source=log for history`);
  let messages: ReturnType<typeof messageJson>[];
  let from: "memory" | "log";
  /** The log's page was cut at logPageBytes of payload before `limit` messages (more and next_after_seq go on). */
  let cut = false;
  if (inMemory !== null && (complete || source === "memory")) {
    messages = inMemory.map(messageJson);
    // Memory's answer keeps to a log page's size too: the oldest that fit with after_seq, else the newest.
    const fit = pageFit(messages, logPageBytes(deps.store.settings), forward);
    cut = fit.length < messages.length;
    messages = fit;
    from = "memory";
  } else {
    const conditions = ["stream = $1"];
    const params: (string | number)[] = [name];
    if (since !== undefined) { params.push(since); conditions.push(`ts > make_timestamp($${params.length}::BIGINT)`); }
    if (until !== undefined) { params.push(until); conditions.push(`ts <= make_timestamp($${params.length}::BIGINT)`); }
    if (afterSeq !== undefined) { params.push(afterSeq); conditions.push(`seq > $${params.length}::BIGINT`); }
    const reply = await runQueryInWorker({
      sql: pageSql(conditions.join(" AND "), limit, logPageBytes(deps.store.settings), !forward),
      params, format: "json", rowLimit: limit, ...queryLimits(deps.config, deps.store.settings), client: remoteAddress(c), signal: c.req.raw.signal,
    });
    // The SQL is the server's, not the client's: a query past its time limit is a timeout (504, with what
    // to narrow), anything else the server's to fix (500), never a bad request.
    if (!reply.ok) {
      const late = timedOut(reply.error);
      throw new AppError(reply.status ?? (reply.busy ? 503 : late ? 504 : 500), late ? `reading the log failed: ${reply.error}; ask for fewer messages (limit) or a narrower range (since, until, after_seq)` : logReadProblem(reply.error, deps.store.settings));
    }
    const rows = JSON.parse(bodyText(reply.body)) as { ts: string; seq: string; origin: string; kind: string; data: string; matched: string }[];
    cut = rows.length > 0 && Number(rows[0]!.matched) > rows.length;
    if (rows.length === 0 && params.length === 1) throw notFound(`no messages for stream ${JSON.stringify(name)} in memory or in the log`);
    messages = rows.map((r) => ({ seq: Number(r.seq), ts: Number(r.ts), time: new Date(Number(r.ts) / 1000).toISOString(), origin: r.origin, kind: r.kind, data: r.data }));
    from = "log";
  }
  if (!forward) return c.json({ stream: name, source: from, messages, ...(cut ? { cut: true } : {}) });
  const last = messages.at(-1)?.seq ?? afterSeq;
  const first = messages[0]?.seq;
  // A resume point before what is kept: say which seqs are gone (since filters on purpose, so not then).
  const gap = since === undefined && first !== undefined && first > afterSeq + 1 ? { from: afterSeq + 1, to: first - 1 } : undefined;
  return c.json({ stream: name, source: from, messages, next_after_seq: last, more: messages.length === limit || cut || (until === undefined && last < deps.hub.lastDeliveredSeq(name)), ...(cut ? { cut: true } : {}), ...(gap ? { gap } : {}) });
}

/**
 * The first of `messages` (with `oldestFirst`, else the last) that end within
 * `bytes`, each counted as a log page counts it (pageSql: UTF-8 bytes of
 * payload and origin, and ROW_COST); at least one.
 */
function pageFit<T extends { origin: string; data: string }>(messages: T[], bytes: number, oldestFirst: boolean): T[] {
  let used = 0;
  const n = messages.length;
  for (let i = 0; i < n; i++) {
    const m = messages[oldestFirst ? i : n - 1 - i]!;
    used += Buffer.byteLength(m.data) + Buffer.byteLength(m.origin) + ROW_COST;
    if (i > 0 && used > bytes) return oldestFirst ? messages.slice(0, i) : messages.slice(n - i);
  }
  return messages;
}

/** A message as the messages endpoints show it (binary as base64). */
function messageJson(m: Message) {
  return {
      seq: m.seq,
      ts: m.ts,
      time: new Date(m.ts / 1000).toISOString(),
      origin: m.origin,
      kind: typeof m.data === "string" ? "text" : "binary",
      data: typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64"),
  };
}

/** How long an SSE client waits before reconnecting (the `retry:` field), ms. */
const SSE_RETRY_MS = 3000;
/** A comment line this often keeps proxies from closing an idle event stream, ms. */
const SSE_KEEPALIVE_MS = 15_000;

/**
 * GET /api/streams/{name}/events?after_seq|since|last: the stream as
 * server-sent events, from a replay (memory or the log) on into live, with no
 * gap or duplicate. Each message is one event: `id:` its seq, `data:` the JSON
 * envelope `{"seq","ts","data"}` (bytes as base64 with `"binary":true`); an
 * EventSource that reconnects sends Last-Event-ID and resumes after it. A gap
 * (history gone, or never logged) is an `event: gap` whose id is the gap's last
 * seq. Pulled: an event is produced only while the client takes them, so a slow
 * reader pauses its replay and holds at most backpressure_limit_bytes here.
 */
async function followEvents(c: Context<HttpEnv>, deps: HttpDeps) {
  const name = streamFromPath(c.req.url, EVENTS);
  const problem = streamNameProblem(name);
  if (problem) throw badRequest(problem);
  const grant = await requireStreamGrant(c, deps, name, "read");
  let replay: ReplayRequest;
  try {
    replay = parseReplayRequest(new URL(c.req.url).searchParams, { lastEventId: c.req.header("last-event-id"), defaultEnvelope: "json" })!;
  } catch (err) {
    if (err instanceof ReplayParamError) throw badRequest(err.message);
    throw err;
  }
  if (replay.envelope !== "json") throw badRequest("envelope: \"raw\" is not available for server-sent events; allowed: json (the default here)");
  const startProblem = deps.followers.startProblem(name, replay.start);
  if (startProblem) throw badRequest(startProblem);
  const max = deps.store.settings.max_connections;
  if (!deps.hub.roomFor(max)) {
    deps.hub.countRefused("max_connections");
    throw new AppError(503, `too many connections: the limit is ${max} (setting max_connections), websockets and event streams together`);
  }
  const releaseSlot = deps.hub.holdEventStream();
  const encoder = new TextEncoder();
  let queue: string[] = [`retry: ${SSE_RETRY_MS}\n\n`];
  let queued = 0;
  let ended = false;
  let wake: (() => void) | null = null;
  const push = (block: string) => {
    queue.push(block);
    queued += block.length;
    const w = wake;
    wake = null;
    w?.();
  };
  const follower = deps.followers.follow(name, replay.start, {
    send: (m) => push(`id: ${m.seq}\ndata: ${envelopeJson(m)}\n\n`),
    gap: (g) => {
      push(`id: ${g.to}\nevent: gap\ndata: ${gapJson(g)}\n\n`);
      return true;
    },
    buffered: () => queued,
    fail: (reason) => {
      push(`event: error\ndata: ${JSON.stringify({ error: reason })}\n\n`);
      ended = true;
    },
  }, remoteAddress(c));
  const stop = () => {
    ended = true;
    deps.followers.unfollow(follower);
    release();
    const w = wake;
    wake = null;
    w?.();
  };
  // A deny of the token's booking ends it (saying so), as it closes the booking's websockets.
  const releaseBooking = grant.bookingId
    ? deps.bookings.hold(grant.bookingId, () => {
      push(`event: error\ndata: ${JSON.stringify({ error: `booking ${grant.bookingId} was cancelled` })}\n\n`);
      stop();
    })
    : () => {};
  const release = () => {
    releaseSlot();
    releaseBooking();
  };
  c.req.raw.signal.addEventListener("abort", stop);
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (queue.length > 0) {
          const text = queue.join("");
          queue = [];
          queued = 0;
          controller.enqueue(encoder.encode(text));
          follower.drained();
          return;
        }
        if (ended) {
          deps.followers.unfollow(follower);
          release();
          controller.close();
          return;
        }
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), SSE_KEEPALIVE_MS);
          wake = () => { clearTimeout(timer); resolve(false); };
        });
        wake = null;
        if (timedOut && !ended) return controller.enqueue(encoder.encode(": keepalive\n\n"));
      }
    },
    cancel: stop,
  }, { highWaterMark: 0 });
  return new Response(body, { headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no" } });
}

/**
 * Binds GET /api/streams, GET /api/streams/{name} and GET /api/streams/{name}/messages
 * (publishing, POST …/messages, is a source: sources/http/publish.ts). A path
 * ending in /messages is always the messages of the stream before it (a stream
 * whose own name ends in /messages is reached with %2F).
 */
export function bindStreamRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/api/streams", async (c) => {
    const visible = await streamVisibility(c, deps);
    const scope = c.req.query("scope");
    if (scope === "cluster") {
      // Every node's streams (docs/CLUSTER.md), each list cut to what this client may see.
      const wait = clusterWaitProblem(c.req.query("wait_ms"));
      if ("problem" in wait) throw badRequest(wait.problem);
      const local = () => nodeStatus(deps.hub, deps.config.nodeId, VERSION);
      const view = deps.cluster ? { ...(await sharedClusterView(deps.cluster, local, wait.ms)), joined: true } : standaloneView(local());
      if (visible.all) return c.json(view);
      // A token that covers only some streams: a node's connections and its number of streams count the
      // others too, so they are not shown; streams_total is then the number of streams it may see there.
      return c.json({ ...view, nodes: view.nodes.map((n) => {
        const streams = n.streams.filter((s) => visible(s.stream));
        return { ...n, streams, connections: null, streams_total: streams.length };
      }) });
    }
    if (scope !== undefined && scope !== "node") throw badRequest(`scope: ${JSON.stringify(scope)} is not valid; allowed: node (this node's streams, the default) or cluster (every node's, through NATS)`);
    const streams = deps.hub.listStreams().filter((s) => visible(s.name)).map(streamStats);
    return c.json({ streams, count: streams.length });
  });

  app.get(`${PREFIX}*`, async (c) => {
    const path = new URL(c.req.url).pathname;
    if (path.endsWith(MESSAGES)) return recentMessages(c, deps);
    if (path.endsWith(EVENTS)) return followEvents(c, deps);
    const name = streamFromPath(c.req.url);
    const problem = streamNameProblem(name);
    if (problem) throw badRequest(problem);
    await requireStreamGrant(c, deps, name, "read");
    const s = deps.hub.stream(name);
    const rule = deps.feeds.get(name);
    if (!s && !rule) throw notFound(`no stream ${JSON.stringify(name)} is live; a stream appears when a client first uses it`);
    return c.json({ ...(s ? streamStats(s) : { stream: name }), feeds: rule?.feeds ?? [] });
  });
}
