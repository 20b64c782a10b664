import type { Hono } from "hono";
import { AppError, badRequest, notFound, tooLarge } from "../../core/errors.ts";
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

/** Binds GET /api/streams, GET /api/streams/{name} and POST /api/streams/{name}/messages. */
export function bindStreamRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/api/streams", async (c) => {
    const visible = await streamVisibility(c, deps);
    const streams = deps.hub.listStreams().filter((s) => visible(s.name)).map(streamStats);
    return c.json({ streams, count: streams.length });
  });

  app.get(`${PREFIX}*`, async (c) => {
    const name = streamFromPath(c.req.url);
    const problem = streamNameProblem(name);
    if (problem) throw badRequest(problem);
    await requireStreamGrant(c, deps, name, "read");
    const s = deps.hub.stream(name);
    if (!s) throw notFound(`no stream ${JSON.stringify(name)} is live; a stream appears when a client first uses it`);
    return c.json(streamStats(s));
  });

  app.post(`${PREFIX}*`, async (c) => {
    if (!new URL(c.req.url).pathname.endsWith(MESSAGES)) {
      throw notFound(`no route POST ${c.req.path}; publish with POST /api/streams/{name}/messages`);
    }
    const name = streamFromPath(c.req.url, MESSAGES);
    const problem = streamNameProblem(name);
    if (problem) throw badRequest(problem);
    await requireStreamGrant(c, deps, name, "write");
    const limit = deps.store.settings.max_message_bytes;
    const declared = Number(c.req.header("content-length") ?? "0");
    if (declared > limit) throw tooLarge(`body of ${declared} bytes is larger than the limit of ${limit} bytes (setting max_message_bytes)`, { limit });
    const body = new Uint8Array(await c.req.arrayBuffer());
    if (body.byteLength > limit) throw tooLarge(`body of ${body.byteLength} bytes is larger than the limit of ${limit} bytes (setting max_message_bytes)`, { limit });
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
      return c.json({ stream: m.stream, seq: m.seq, ts: m.ts, kind: typeof data === "string" ? "text" : "binary", bytes: body.byteLength });
    } catch (err) {
      if (err instanceof PublishError) throw new AppError(err.code === "too_large" ? 413 : 400, err.message);
      throw err;
    }
  });
}
