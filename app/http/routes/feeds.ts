import type { Hono } from "hono";
import { badRequest } from "../../core/errors.ts";
import { parseFeedRule } from "../../relay/feeds.ts";
import { requirePractableApi } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { requireStreamGrant } from "../stream-access.ts";

const PREFIX = "/api/streams/";

/** The stream name after /api/streams/ (percent-decoded; bad encoding is a 400). */
function nameFromPath(url: string): string {
  const raw = new URL(url).pathname.slice(PREFIX.length);
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest(`stream name in the path is not valid percent-encoding: ${JSON.stringify(raw)}`);
  }
}

/**
 * Binds practable's stream rules with practable's shapes: POST/PUT /api/streams
 * {"stream","feeds"} (answers the rule), GET /api/streams/all
 * ({"stream/x":["video0","audio0"]}), GET /api/streams/{name} (the feeds array,
 * for a stream that has a rule; other names fall through to the stream's stats),
 * DELETE /api/streams/all (also practable's /deleteAll) and /api/streams/{name}
 * (each answers the name as a JSON string). Must be bound before the streams
 * routes so /all is not taken for a stream.
 */
export function bindFeedRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const admin = requirePractableApi(deps);
  app.on(["POST", "PUT"], "/api/streams", admin, async (c) => {
    const rule = parseFeedRule(await readJsonObject(c.req.raw, '{"stream":"stream/x","feeds":["video0","audio0"]}'));
    deps.feeds.set(rule);
    return c.json(rule);
  });
  app.get(`${PREFIX}all`, admin, (c) => c.json(Object.fromEntries(deps.feeds.all().map((r) => [r.stream, r.feeds]))));
  for (const name of ["all", "deleteAll"]) {
    app.delete(`${PREFIX}${name}`, admin, (c) => {
      deps.feeds.removeAll();
      return c.json(name);
    });
  }
  app.get(`${PREFIX}*`, async (c, next) => {
    const name = nameFromPath(c.req.url);
    const rule = deps.feeds.get(name);
    if (!rule) return next();
    await requireStreamGrant(c, deps, name, "read");
    return c.json(rule.feeds);
  });
  app.delete(`${PREFIX}*`, admin, (c) => {
    const name = nameFromPath(c.req.url);
    deps.feeds.remove(name);
    return c.json(name);
  });
}
