import type { Hono } from "hono";
import { AppError, badRequest, notFound } from "../../core/errors.ts";
import { streamNameProblem } from "../../core/stream-name.ts";
import { PublishError } from "../../hub/hub.ts";
import { LogWriteError } from "../../log/spool.ts";
import { readBodyCapped } from "../../http/body.ts";
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
        throw new AppError(503, notStoredMessage(m.seq, m.stream, err as Error, deps.store.settings.log_deliver_unlogged));
      }
      return c.json({ stream: m.stream, seq: m.seq, ts: m.ts, kind: typeof data === "string" ? "text" : "binary", bytes: body.byteLength });
    } catch (err) {
      if (err instanceof PublishError) throw new AppError(err.code === "too_large" ? 413 : err.code === "log_unavailable" ? 503 : 400, err.message);
      throw err;
    }
  });
}

/** The 503 text for a publish whose log write failed: exactly what was and was not stored and delivered, and whether a retry duplicates. */
export function notStoredMessage(seq: number, stream: string, err: Error, deliverUnlogged: boolean): string {
  if (err instanceof LogWriteError && err.stored === "no") {
    return `message ${seq} of ${JSON.stringify(stream)} is not stored: ${err.message}; ${deliverUnlogged ? "it was delivered to live subscribers (setting log_deliver_unlogged)" : "it was not delivered either"}; sending it again will not duplicate it in the log`;
  }
  return `message ${seq} of ${JSON.stringify(stream)} may or may not be stored: ${err.message}; it was delivered to live subscribers; if you send it again, seq tells the copies apart`;
}
