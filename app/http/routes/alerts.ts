import type { Hono } from "hono";
import { sendTestMessage } from "../../alerts/message.ts";
import { webhookUrlProblem } from "../../alerts/slack.ts";
import { SLACK_URL_SECRET, slackUrlView } from "../../alerts/webhook-url.ts";
import { badRequest } from "../../core/errors.ts";
import { requireAdmin } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

/**
 * Binds GET /api/alerts (history, firing, Slack queue), GET/PUT /api/slack (the
 * webhook URL, always redacted) and POST /api/slack/test (send now, show Slack's answer).
 */
export function bindAlertRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const admin = requireAdmin(deps);
  app.get("/api/alerts", admin, (c) => c.json(deps.alerts.snapshot()));

  const slackView = () => slackUrlView(deps.slackUrl());
  app.get("/api/slack", admin, (c) => c.json(slackView()));
  app.put("/api/slack", admin, async (c) => {
    const body = await readJsonObject(c.req.raw, '{"webhook_url":"https://hooks.slack.com/services/…"} (or null to remove it)');
    const url = body.webhook_url;
    if (url !== null && typeof url !== "string") throw badRequest("webhook_url: allowed: a URL string, or null to remove it", { fields: { webhook_url: "must be a string or null" } });
    if (typeof url === "string") {
      const problem = webhookUrlProblem(url);
      if (problem) throw badRequest(`webhook_url: ${problem}`, { fields: { webhook_url: problem } });
    }
    deps.store.setSecret(SLACK_URL_SECRET, url || null);
    const view = slackView();
    return c.json({ ...view, ...(view.source === "env" ? { note: "SWITCHYARD_SLACK_WEBHOOK_URL is set and wins over the stored URL" } : {}) });
  });

  app.post("/api/slack/test", admin, async (c) => {
    const { url } = deps.slackUrl();
    if (!url) throw badRequest("no Slack webhook URL is set; PUT /api/slack {\"webhook_url\": …} or set SWITCHYARD_SLACK_WEBHOOK_URL");
    const b = await readJsonObject(c.req.raw, '{"text":"…"} or nothing', {});
    const result = await sendTestMessage(url, typeof b.text === "string" && b.text ? b.text : undefined);
    return c.json(result, result.ok ? 200 : 502);
  });
}
