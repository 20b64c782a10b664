import type { Hono } from "hono";
import { SETTING_FIELDS, type Settings } from "../../config/settings.ts";
import { requireAdmin } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

/** The settings with what each means and whether a change needs a restart. */
function settingsView(settings: Settings) {
  return {
    settings,
    fields: Object.fromEntries(Object.entries(SETTING_FIELDS).map(([k, f]) => [k, { description: f.description, restart: f.restart ?? false }])),
  };
}

/**
 * Binds GET /api/settings and PATCH /api/settings: the runtime settings record,
 * validated field by field (400 naming each bad field and what it allows),
 * saved in the settings store and applied live where the setting allows.
 */
export function bindSettingsRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const admin = requireAdmin(deps);
  app.get("/api/settings", admin, (c) => c.json(settingsView(deps.store.settings)));
  app.patch("/api/settings", admin, async (c) => {
    const patch = await readJsonObject(c.req.raw, 'the settings to change, e.g. {"access":"token"}');
    const before = deps.store.settings;
    const after = deps.store.update(patch);
    const changed = Object.keys(patch).filter((k) => JSON.stringify(before[k as keyof Settings]) !== JSON.stringify(after[k as keyof Settings]));
    const restart = changed.filter((k) => SETTING_FIELDS[k as keyof Settings].restart);
    return c.json({ ...settingsView(after), changed, ...(restart.length ? { restart_needed: restart } : {}) });
  });
}
