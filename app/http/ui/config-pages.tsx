import type { Hono } from "hono";
import { sendTestMessage } from "../../alerts/message.ts";
import { webhookUrlProblem } from "../../alerts/slack.ts";
import { SLACK_URL_SECRET, slackUrlView } from "../../alerts/webhook-url.ts";
import { SettingsGroupForm, SettingsPage } from "../../../views/settings.tsx";
import { SlackPage, SlackTestResult, SlackUrlForm, type SlackUrlView } from "../../../views/slack.tsx";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { ALERT_KEYS, saveSettingsForm, SETTING_GROUPS, settingInputs, settingValues } from "./settings-form.ts";
import { formFields } from "./support.ts";

/** Binds /admin/settings and /admin/slack: settings forms (validated as the API), the webhook URL and its test. */
export function bindConfigPages(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const groups = SETTING_GROUPS.map((g) => ({ id: g.id, title: g.title, inputs: settingInputs(g.keys) }));
  app.get("/admin/settings", (c) => c.html(<SettingsPage config={deps.config} sources={deps.configSources} groups={groups} values={settingValues(deps.store.settings)} tls={deps.tls?.() ?? null} />));
  app.post("/admin/settings", async (c) => {
    const form = await formFields(c);
    const group = SETTING_GROUPS.find((g) => g.id === form.group);
    if (!group) return c.text(`unknown settings group ${JSON.stringify(form.group)}; allowed: ${SETTING_GROUPS.map((g) => g.id).join(", ")}`, 400);
    const saved = saveSettingsForm(deps.store, group.keys, form);
    return c.html(<SettingsGroupForm id={group.id} title={group.title} action="/admin/settings" inputs={settingInputs(group.keys)} values={saved.values} errors={saved.errors} notice={saved.notice} />, saved.errors ? 422 : 200);
  });

  const slackView = (): SlackUrlView => slackUrlView(deps.slackUrl());
  const rules = settingInputs(ALERT_KEYS);
  app.get("/admin/slack", (c) => c.html(<SlackPage view={slackView()} rules={rules} values={settingValues(deps.store.settings)} />));
  app.post("/admin/slack/url", async (c) => {
    const form = await formFields(c);
    if (form.action === "remove") {
      deps.store.setSecret(SLACK_URL_SECRET, null);
      return c.html(<SlackUrlForm view={slackView()} notice={{ kind: "ok", text: "webhook URL removed: alerts are kept in the history only" }} />);
    }
    const url = (form.webhook_url ?? "").trim();
    const problem = url === "" ? "allowed: Slack's incoming webhook URL, https://hooks.slack.com/services/…" : webhookUrlProblem(url);
    if (problem) return c.html(<SlackUrlForm view={slackView()} errors={{ webhook_url: problem }} />, 422);
    deps.store.setSecret(SLACK_URL_SECRET, url);
    const view = slackView();
    const note = view.source === "env" ? "saved, but SWITCHYARD_SLACK_WEBHOOK_URL is set and wins over the saved URL" : "webhook URL saved; send a test message to check it";
    return c.html(<SlackUrlForm view={view} notice={{ kind: view.source === "env" ? "warn" : "ok", text: note }} />);
  });
  app.post("/admin/slack/test", async (c) => {
    const { url } = deps.slackUrl();
    if (!url) return c.html(<SlackTestResult ok={false} text="no webhook URL is set: save one first" />, 422);
    const r = await sendTestMessage(url);
    return c.html(<SlackTestResult ok={r.ok} text={r.ok ? `Slack answered: ${r.message}` : `Slack did not take it (${r.reason}${r.status ? ` ${r.status}` : ""}): ${r.message}`} />);
  });
  app.post("/admin/slack/rules", async (c) => {
    const saved = saveSettingsForm(deps.store, ALERT_KEYS, await formFields(c));
    return c.html(<SettingsGroupForm id="alert-rules" title="Alert rules" action="/admin/slack/rules" inputs={rules} values={saved.values} errors={saved.errors} notice={saved.notice} />, saved.errors ? 422 : 200);
  });
}
