import type { Hono } from "hono";
import { parseFeedRule } from "../../relay/feeds.ts";
import { requirePractableApi } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

/**
 * Binds practable's stream rules: POST/PUT /api/streams {"stream","feeds"},
 * GET/DELETE /api/streams/all and DELETE /api/streams/{name}. (GET of one
 * stream is in the streams routes, which add the stream's feeds to its stats.)
 * Must be bound before the streams routes so /all is not taken for a stream.
 */
export function bindFeedRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const admin = requirePractableApi(deps);
  app.on(["POST", "PUT"], "/api/streams", admin, async (c) => {
    const rule = parseFeedRule(await readJsonObject(c.req.raw, '{"stream":"stream/x","feeds":["video0","audio0"]}'));
    deps.feeds.set(rule);
    return c.json(rule);
  });
  app.get("/api/streams/all", admin, (c) => c.json(Object.fromEntries(deps.feeds.all().map((r) => [r.stream, r]))));
  app.delete("/api/streams/all", admin, (c) => {
    deps.feeds.removeAll();
    return c.json("all");
  });
  app.delete("/api/streams/*", admin, (c) => {
    const name = decodeURIComponent(new URL(c.req.url).pathname.slice("/api/streams/".length));
    deps.feeds.remove(name);
    return c.json(name);
  });
}
