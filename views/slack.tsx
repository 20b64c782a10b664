import type { FC } from "hono/jsx";
import { FieldError, Layout, Notice } from "./layout.tsx";
import { SettingsGroupForm, type SettingInput } from "./settings.tsx";

export interface SlackUrlView {
  webhook_url: string | null;
  source: "env" | "settings" | null;
}

/** The webhook URL form: the saved URL is only ever shown redacted. */
export const SlackUrlForm: FC<{ view: SlackUrlView; errors?: Record<string, string>; notice?: { kind: "ok" | "bad" | "warn"; text: string } }> = ({ view, errors, notice }) => (
  <section class="card" id="slack-url">
    <h2>Webhook</h2>
    {notice && <Notice kind={notice.kind} text={notice.text} />}
    <p>
      {view.webhook_url ? <>Alerts go to <code>{view.webhook_url}</code>{view.source === "env" ? " (from SWITCHYARD_SLACK_WEBHOOK_URL, which wins over a saved URL)" : ""}.</> : <>No webhook is set: alerts are kept in the history only.</>}
    </p>
    <form class="stack" method="post" action="/admin/slack/url" hx-post="/admin/slack/url" hx-target="#slack-url" hx-swap="outerHTML">
      <label>
        Incoming webhook URL
        <input type="password" name="webhook_url" autocomplete="off" placeholder="https://hooks.slack.com/services/T…/B…/…" aria-invalid={errors?.webhook_url ? "true" : undefined} aria-describedby={errors?.webhook_url ? "webhook_url-error" : undefined} />
        <span class="help">from Slack: Apps → Incoming Webhooks → Add New Webhook to Workspace; shown redacted once saved</span>
        <FieldError errors={errors} name="webhook_url" />
      </label>
      <div class="row">
        <button type="submit" name="action" value="save">Save URL</button>
        {view.source === "settings" && <button type="submit" class="danger" name="action" value="remove">Remove URL</button>}
      </div>
    </form>
    <hr style="border:none;border-top:1px solid var(--line);margin:1rem 0" />
    <form class="row" method="post" action="/admin/slack/test" hx-post="/admin/slack/test" hx-target="#slack-test-result">
      <button type="submit" class="secondary" disabled={!view.webhook_url}>Send test message</button>
      <span class="small muted">sends one message now and shows Slack's answer</span>
    </form>
    <div id="slack-test-result" aria-live="polite"></div>
  </section>
);

/** Slack's answer to a test message. */
export const SlackTestResult: FC<{ ok: boolean; text: string }> = ({ ok, text }) => <Notice kind={ok ? "ok" : "bad"} text={text} />;

export const SlackPage: FC<{ view: SlackUrlView; rules: SettingInput[]; values: Record<string, string> }> = ({ view, rules, values }) => (
  <Layout title="Slack" active="slack">
    <h1>Slack alerts</h1>
    <SlackUrlForm view={view} />
    <SettingsGroupForm id="alert-rules" title="Alert rules" action="/admin/slack/rules" inputs={rules} values={values} />
  </Layout>
);
