import type { Hono } from "hono";
import { AppError, badRequest } from "../../core/errors.ts";
import { streamNameProblem } from "../../core/stream-name.ts";
import { PublishError } from "../../hub/hub.ts";
import { bodyChunks } from "../../http/body.ts";
import type { HttpDeps, HttpEnv } from "../../http/deps.ts";
import { remoteAddress, requireStreamGrant } from "../../http/stream-access.ts";

const PREFIX = "/ts/";

/**
 * Binds POST /ts/{stream}, as on a practable host: a long-lived request body
 * (e.g. `ffmpeg … -f mpegts http://localhost:8888/ts/video0`) whose bytes are
 * published as binary messages, one per chunk received, until the body ends.
 */
export function bindTsRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.post(`${PREFIX}*`, async (c) => {
    const stream = decodeURIComponent(new URL(c.req.url).pathname.slice(PREFIX.length));
    const problem = streamNameProblem(stream);
    if (problem) throw badRequest(problem);
    await requireStreamGrant(c, deps, stream, "write");
    const origin = `http:${remoteAddress(c)}`;
    const limit = deps.store.settings.max_message_bytes;
    let messages = 0;
    let bytes = 0;
    if (c.req.raw.body) {
      for await (const chunk of bodyChunks(c.req.raw)) {
        // A chunk larger than one message may hold is split, so nothing is refused mid-stream.
        for (let o = 0; o < chunk.byteLength; o += limit) {
          const part = chunk.subarray(o, Math.min(chunk.byteLength, o + limit));
          try {
            deps.hub.publish(stream, new Uint8Array(part), origin);
          } catch (err) {
            if (err instanceof PublishError) throw err.code === "log_unavailable" ? new AppError(503, `${err.message}; ${messages} messages of this request before it were accepted`) : badRequest(err.message);
            throw err;
          }
          messages++;
          bytes += part.byteLength;
        }
      }
    }
    return c.json({ stream, messages, bytes });
  });
}
