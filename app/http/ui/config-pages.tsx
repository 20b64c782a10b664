import type { Hono } from "hono";
import { sendTestMessage } from "../../alerts/message.ts";
import { webhookUrlProblem } from "../../alerts/slack.ts";
import { SLACK_URL_SECRET, slackUrlView } from "../../alerts/webhook-url.ts";
import { SettingsGroupForm, SettingsPage } from "../../../views/settings.tsx";
import { SlackPage, SlackTestResult, SlackUrlForm, type SlackUrlView } from "../../../views/slack.tsx";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { credentialProblem, offloadCredentials, S3_KEY_ID_SECRET, S3_SECRET_SECRET } from "../../log/s3-store.ts";
import { OffloadCredentialsForm } from "../../../views/offload.tsx";
import { ALERT_KEYS, saveSettingsForm, SETTING_GROUPS, settingInputs, settingValues } from "./settings-form.ts";
import { formFields } from "./support.ts";

/** Binds /admin/settings and /admin/slack: settings forms (validated as the API), the webhook URL and its test. */
export function bindConfigPages(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const groups = SETTING_GROUPS.map((g) => ({ id: g.id, title: g.title, inputs: settingInputs(g.keys) }));
  const credentialSource = () => offloadCredentials(deps.config.s3Credentials, deps.store)?.source ?? null;
  app.get("/admin/settings", (c) => c.html(<SettingsPage config={deps.config} sources={deps.configSources} groups={groups} values={settingValues(deps.store.settings)} tls={deps.tls?.() ?? null} offloadCredentials={credentialSource()} />));
  app.post("/admin/offload/credentials", async (c) => {
    const form = await formFields(c);
    if (form.action === "remove") {
      deps.store.setSecret(S3_KEY_ID_SECRET, null);
      deps.store.setSecret(S3_SECRET_SECRET, null);
      deps.offloader?.kick();
      return c.html(<OffloadCredentialsForm source={credentialSource()} notice={{ kind: "ok", text: "saved credentials removed" }} />);
    }
    const errors: Record<string, string> = {};
    for (const name of ["access_key_id", "secret_access_key"] as const) {
      const problem = credentialProblem(form[name] ?? "");
      if (problem) errors[name] = problem;
    }
    if (Object.keys(errors).length > 0) return c.html(<OffloadCredentialsForm source={credentialSource()} errors={errors} />, 422);
    deps.store.setSecret(S3_KEY_ID_SECRET, form.access_key_id!);
    deps.store.setSecret(S3_SECRET_SECRET, form.secret_access_key!);
    deps.offloader?.kick();
    const source = credentialSource();
    return c.html(<OffloadCredentialsForm source={source} notice={source === "settings" ? { kind: "ok", text: "credentials saved" } : { kind: "warn", text: "saved, but credentials in the environment win over them" }} />);
  });
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
