import type { Context, Hono } from "hono";
import { AppError, badRequest, notFound } from "../../core/errors.ts";
import { readBodyCapped } from "../body.ts";
import { streamNameProblem } from "../../core/stream-name.ts";
import { PublishError } from "../../hub/hub.ts";
import { streamStats } from "../../hub/stream-state.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { remoteAddress, requireStreamGrant, streamVisibility } from "../stream-access.ts";

const PREFIX = "/api/streams/";
const MESSAGES = "/messages";

/** The stream name in a path below /api/streams/, with %2F kept inside a name. */
function streamFromPath(url: string, suffix = ""): string {
  const raw = new URL(url).pathname.slice(PREFIX.length, suffix ? -suffix.length : undefined);
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest(`stream name in the path is not valid percent-encoding: ${JSON.stringify(raw)}`);
  }
}

/** Content types published as text; anything else (or none) is binary. */
function isTextType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const t = contentType.split(";")[0]!.trim().toLowerCase();
  return t.startsWith("text/") || t === "application/json" || t.endsWith("+json") || t === "application/x-ndjson"
    || t === "application/xml" || t.endsWith("+xml") || t === "application/x-www-form-urlencoded";
}

/** Parses `since` (ISO 8601 time, or microseconds since the epoch) into µs. */
function parseSince(text: string | undefined): number | undefined {
  if (text === undefined || text === "") return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw badRequest(`since: ${JSON.stringify(text)} is not a time; allowed: an ISO 8601 time (2026-11-23T12:00:00Z) or microseconds since the epoch`);
  return ms * 1000;
}

function parseCount(name: string, text: string | undefined, fallback: number | undefined, min: number, max: number): number | undefined {
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw badRequest(`${name}: ${JSON.stringify(text)} is not valid; allowed: a whole number from ${min} to ${max}`);
  return n;
}

/** GET /api/streams/{name}/messages?limit&since&after_seq: the latest messages kept in memory, oldest first. */
async function recentMessages(c: Context<HttpEnv>, deps: HttpDeps) {
  const name = streamFromPath(c.req.url, MESSAGES);
  const problem = streamNameProblem(name);
  if (problem) throw badRequest(problem);
  await requireStreamGrant(c, deps, name, "read");
  const kept = Math.max(1, deps.store.settings.recent_messages_per_stream);
  const limit = parseCount("limit", c.req.query("limit"), Math.min(100, kept), 1, kept)!;
  const since = parseSince(c.req.query("since"));
  const afterSeq = parseCount("after_seq", c.req.query("after_seq"), undefined, 0, Number.MAX_SAFE_INTEGER);
  const messages = deps.recent.query(name, { limit, since, afterSeq });
  if (messages === null) throw notFound(`no messages are kept for stream ${JSON.stringify(name)}; nothing was published on it since the server started, or it was evicted`);
  return c.json({
    stream: name,
    messages: messages.map((m) => ({
      seq: m.seq,
      ts: m.ts,
      time: new Date(m.ts / 1000).toISOString(),
      origin: m.origin,
      kind: typeof m.data === "string" ? "text" : "binary",
      data: typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64"),
    })),
  });
}

/**
 * Binds GET /api/streams, GET /api/streams/{name}, GET /api/streams/{name}/messages
 * and POST /api/streams/{name}/messages. A path ending in /messages is always the
 * messages of the stream before it (a stream whose own name ends in /messages is
 * reached with %2F).
 */
export function bindStreamRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/api/streams", async (c) => {
    const visible = await streamVisibility(c, deps);
    const streams = deps.hub.listStreams().filter((s) => visible(s.name)).map(streamStats);
    return c.json({ streams, count: streams.length });
  });

  app.get(`${PREFIX}*`, async (c) => {
    if (new URL(c.req.url).pathname.endsWith(MESSAGES)) return recentMessages(c, deps);
    const name = streamFromPath(c.req.url);
    const problem = streamNameProblem(name);
    if (problem) throw badRequest(problem);
    await requireStreamGrant(c, deps, name, "read");
    const s = deps.hub.stream(name);
    const rule = deps.feeds.get(name);
    if (!s && !rule) throw notFound(`no stream ${JSON.stringify(name)} is live; a stream appears when a client first uses it`);
    return c.json({ ...(s ? streamStats(s) : { stream: name }), feeds: rule?.feeds ?? [] });
  });

  app.post(`${PREFIX}*`, async (c) => {
    if (!new URL(c.req.url).pathname.endsWith(MESSAGES)) {
      throw notFound(`no route POST ${c.req.path}; publish with POST /api/streams/{name}/messages`);
    }
    const name = streamFromPath(c.req.url, MESSAGES);
    const problem = streamNameProblem(name);
    if (problem) throw badRequest(problem);
    await requireStreamGrant(c, deps, name, "write");
    const body = await readBodyCapped(c.req.raw, deps.store.settings.max_message_bytes);
    let data: string | Uint8Array = body;
    if (isTextType(c.req.header("content-type"))) {
      try {
        data = new TextDecoder("utf-8", { fatal: true }).decode(body);
      } catch {
        throw badRequest("body is not valid UTF-8 but Content-Type says text; send binary as application/octet-stream");
      }
    }
    try {
      const m = deps.hub.publish(name, data, `http:${remoteAddress(c)}`);
      // The 2xx means "in the log, on disk": wait for the fsync that covers this message.
      try {
        await deps.spool.durable();
      } catch (err) {
        throw new AppError(503, `message ${m.seq} was delivered but ${(err as Error).message}; the server log has the details`);
      }
      return c.json({ stream: m.stream, seq: m.seq, ts: m.ts, kind: typeof data === "string" ? "text" : "binary", bytes: body.byteLength });
    } catch (err) {
      if (err instanceof PublishError) throw new AppError(err.code === "too_large" ? 413 : 400, err.message);
      throw err;
    }
  });
}
