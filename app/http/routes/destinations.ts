import type { Context, Hono } from "hono";
import { notFound } from "../../core/errors.ts";
import { destinationView } from "../../relay/destinations.ts";
import { parseRule } from "../../relay/rule.ts";
import { restoreRedactedDestination } from "../../relay/secret-url.ts";
import { requireAdmin, requirePractableApi } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

const PREFIX = "/api/destinations/";


/** The id in /api/destinations/{id}[/reconnect] (ids may hold "/"). */
function idFromPath(c: Context<HttpEnv>, suffix = ""): string {
  const path = new URL(c.req.url).pathname;
  return decodeURIComponent(path.slice(PREFIX.length, suffix ? path.length - suffix.length : undefined));
}

/**
 * Binds practable's destination API: POST/PUT /api/destinations,
 * GET/DELETE /api/destinations/all, GET/DELETE /api/destinations/{id}; plus
 * POST /api/destinations/{id}/reconnect. Responses carry the rule (token
 * redacted) and its live status.
 */
export function bindDestinationRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  // practable's routes are open to its boot scripts on the box; the reconnect button (ours) is admin only.
  const practable = requirePractableApi(deps);
  const admin = requireAdmin(deps);
  app.use("/api/destinations", practable);
  app.use(`${PREFIX}*`, async (c, next) => (c.req.method === "POST" && c.req.path.startsWith(PREFIX) ? admin : practable)(c, next));

  const upsert = async (c: Context<HttpEnv>) => {
    const warnings: string[] = [];
    const body = await readJsonObject(c.req.raw, 'a rule like {"id":"0","stream":"spin30","destination":"wss://…","token":""}');
    // A rule read back and posted again keeps its stored URL and token where the read redacted them.
    const stored = typeof body.id === "string" ? deps.destinations.get(body.id)?.rule : undefined;
    const rule = parseRule(restoreRedactedDestination(body, stored), deps.recordsDir, { storedToken: (id) => deps.destinations.get(id)?.rule.token, warnings });
    for (const w of warnings) deps.logger.warn("destination rule: " + w, { id: rule.id });
    const d = await deps.destinations.upsert(rule);
    return c.json(warnings.length > 0 ? { ...destinationView(d), warnings } : destinationView(d));
  };
  app.on(["POST", "PUT"], "/api/destinations", upsert);

  app.get(`${PREFIX}all`, (c) => c.json(Object.fromEntries(deps.destinations.list().map((d) => [d.rule.id, destinationView(d)]))));
  // practable's delete-everything is DELETE …/deleteAll (its …/all deletes a rule named "all");
  // here both delete every rule, and each answers its own name as practable does.
  for (const name of ["all", "deleteAll"]) {
    app.delete(`${PREFIX}${name}`, async (c) => {
      await deps.destinations.removeAll();
      return c.json(name);
    });
  }
  app.post(`${PREFIX}*`, (c) => {
    if (!c.req.path.endsWith("/reconnect")) throw notFound(`no route POST ${c.req.path}; add a rule with POST /api/destinations`);
    const id = idFromPath(c, "/reconnect");
    const d = deps.destinations.get(id);
    if (!d) throw notFound(`no destination ${JSON.stringify(id)}`);
    d.reconnect();
    return c.json(destinationView(d));
  });
  app.get(`${PREFIX}*`, (c) => {
    const id = idFromPath(c);
    const d = deps.destinations.get(id);
    if (!d) throw notFound(`no destination ${JSON.stringify(id)}; GET /api/destinations/all lists them`);
    return c.json(destinationView(d));
  });
  app.delete(`${PREFIX}*`, async (c) => {
    const id = idFromPath(c);
    await deps.destinations.remove(id);
    return c.json(id);
  });
}
