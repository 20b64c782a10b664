import type { Hono } from "hono";
import { AppError, badRequest, notFound } from "../../core/errors.ts";
import { streamNameProblem } from "../../core/stream-name.ts";
import { livePatterns } from "../../core/stream-pattern.ts";
import { PublishError } from "../../hub/hub.ts";
import { LogWriteError } from "../../log/spool.ts";
import { readBodyCapped } from "../../http/body.ts";
import { BATCH_BODY_LIMIT, BATCH_BYTES_IN_FLIGHT, batchForm, splitFrames, splitNdjson } from "./publish-batch.ts";
import type { HttpDeps, HttpEnv } from "../../http/deps.ts";
import { remoteAddress, requireStreamGrant } from "../../http/stream-access.ts";
import { MESSAGES, PREFIX, streamFromPath } from "../../http/stream-path.ts";

/** Content types published as text; anything else (or none) is binary. */
function isTextType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const t = contentType.split(";")[0]!.trim().toLowerCase();
  return t.startsWith("text/") || t === "application/json" || t.endsWith("+json") || t === "application/x-ndjson"
    || t === "application/xml" || t.endsWith("+xml") || t === "application/x-www-form-urlencoded";
}

/**
 * Binds POST /api/streams/{name}/messages: the body is one message, text or
 * binary by Content-Type, published through the hub; the 2xx comes once the log
 * has it on disk, and names its seq.
 */
export function bindPublishRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  // A stream in log_exclude is never stored: its answer says so rather than imply the fsync covered it.
  const excluded = livePatterns(() => deps.store.settings.log_exclude);
  const notLogged = (stream: string) => (excluded(stream) ? { stored: false } : {});
  // Bytes of batch bodies being read or published now, over all requests (see BATCH_BYTES_IN_FLIGHT).
  let batchBytesHeld = 0;
  app.post(`${PREFIX}*`, async (c) => {
    if (!new URL(c.req.url).pathname.endsWith(MESSAGES)) {
      throw notFound(`no route POST ${c.req.path}; publish with POST /api/streams/{name}/messages`);
    }
    const name = streamFromPath(c.req.url, MESSAGES);
    const problem = streamNameProblem(name);
    if (problem) throw badRequest(problem);
    await requireStreamGrant(c, deps, name, "write");
    const form = batchForm(c.req.header("content-type"));
    if (form) {
      // A batch holds its body, its text and its messages at once: bound what all batches together may hold.
      const declared = Number(c.req.header("content-length") ?? NaN);
      const reserve = Number.isFinite(declared) ? declared : BATCH_BODY_LIMIT;
      if (batchBytesHeld + reserve > BATCH_BYTES_IN_FLIGHT) {
        throw new AppError(503, `too many batches at once: ${batchBytesHeld} bytes of batches are being published, and this one (${Number.isFinite(declared) ? `${declared} bytes` : `chunked, counted as ${BATCH_BODY_LIMIT} bytes`}) would pass the limit of ${BATCH_BYTES_IN_FLIGHT}; retry after the Retry-After delay, or send Content-Length`);
      }
      batchBytesHeld += reserve;
      try {
        return c.json({ ...await publishBatch(c.req.raw, name, form, `http:${remoteAddress(c)}`, deps), ...notLogged(name) });
      } finally {
        batchBytesHeld -= reserve;
      }
    }
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
      // The 2xx means "in the log, on disk": wait for the group commit (write and fsync) that holds this message.
      const { value: m, committed } = publishCommitted(deps, 1, () => deps.hub.publish(name, data, `http:${remoteAddress(c)}`));
      try {
        await committed;
      } catch (err) {
        throw new AppError(503, notStoredMessage(m.seq, m.stream, err as Error, deps.store.settings.log_deliver_unlogged));
      }
      return c.json({ stream: m.stream, seq: m.seq, ts: m.ts, kind: typeof data === "string" ? "text" : "binary", bytes: body.byteLength, ...notLogged(name) });
    } catch (err) {
      if (err instanceof PublishError) throw new AppError(err.code === "too_large" ? 413 : err.code === "log_unavailable" ? 503 : 400, err.message);
      throw err;
    }
  });
}

/** The answer to a batch: the seq range its messages were given, all fsynced in the log. */
export interface BatchAnswer {
  stream: string;
  count: number;
  first_seq: number;
  last_seq: number;
  /** Receive time (µs) of the first and last message. */
  first_ts: number;
  last_ts: number;
  kind: "text" | "binary";
  bytes: number;
}

/**
 * Publishes a batch (NDJSON lines or binary frames) as one message each, in
 * order, in one event-loop turn, so no other publisher's message falls between
 * them and the seqs are consecutive. The whole body is checked first: any bad
 * line or frame refuses the batch (nothing published). Resolves once the log has
 * fsynced the last of them.
 */
async function publishBatch(req: Request, name: string, form: "ndjson" | "framed", origin: string, deps: HttpDeps): Promise<BatchAnswer> {
  const body = await readBodyCapped(req, BATCH_BODY_LIMIT, "a publish batch: 16 MiB; split larger batches");
  const max = deps.store.settings.max_message_bytes;
  const messages: (string | Uint8Array)[] = form === "ndjson" ? splitNdjson(body, max) : splitFrames(body, max);
  // Set inside the callback below: declared so that the checker does not narrow them to null.
  let first = null as { seq: number; ts: number } | null;
  let last = null as { seq: number; ts: number } | null;
  let committed: Promise<void>;
  try {
    ({ committed } = publishCommitted(deps, messages.length, () => {
      for (const data of messages) {
        const m = deps.hub.publish(name, data, origin);
        first ??= m;
        last = m;
      }
    }));
  } catch (err) {
    if (!(err instanceof PublishError)) throw err;
    if (!first) throw new AppError(err.code === "too_large" ? 413 : err.code === "log_unavailable" ? 503 : 400, `${err.message}; nothing of the batch was stored`);
    // The log failed part-way through a very large batch: say exactly which messages got a seq.
    throw new AppError(503, `the batch was cut short at message ${(last!.seq - first.seq) + 2}: ${err.message}; messages ${first.seq}-${last!.seq} of ${JSON.stringify(name)} were accepted, the rest were not stored or delivered; query after_seq=${first.seq - 1} to see which are in the log before sending the rest again`);
  }
  try {
    await committed;
  } catch (err) {
    throw new AppError(503, notStoredMessage(first!.seq, name, err as Error, deps.store.settings.log_deliver_unlogged).replace(`message ${first!.seq}`, `messages ${first!.seq}-${last!.seq}`));
  }
  return { stream: name, count: messages.length, first_seq: first!.seq, last_seq: last!.seq, first_ts: first!.ts, last_ts: last!.ts, kind: form === "ndjson" ? "text" : "binary", bytes: body.byteLength };
}

/**
 * Runs `publish` (which appends `count` records to the log, or none for a
 * log_exclude stream) with the wait for their group commit registered first, so
 * a write that fails within the call (a flood writes every 4 MiB) fails the
 * wait too, instead of a later durable() taking it for written.
 */
function publishCommitted<T>(deps: HttpDeps, count: number, publish: () => T): { value: T; committed: Promise<void> } {
  const commit = deps.spool.commitWaiter();
  commit.cover(deps.spool.stats.appended + count);
  try {
    return { value: publish(), committed: commit.done };
  } finally {
    commit.cover(deps.spool.stats.appended);
  }
}

/** The 503 text for a publish whose log write failed: exactly what was and was not stored and delivered, and whether a retry duplicates. */
export function notStoredMessage(seq: number, stream: string, err: Error, deliverUnlogged: boolean): string {
  if (err instanceof LogWriteError && err.stored === "no") {
    return `message ${seq} of ${JSON.stringify(stream)} is not stored: ${err.message}; ${deliverUnlogged ? "it was delivered to live subscribers (setting log_deliver_unlogged)" : "it was not delivered either"}; sending it again will not duplicate it in the log`;
  }
  return `message ${seq} of ${JSON.stringify(stream)} may or may not be stored: ${err.message}; it was delivered to live subscribers; if you send it again, seq tells the copies apart`;
}
