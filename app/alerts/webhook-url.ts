import type { SettingsStore } from "../config/store.ts";
import { redactWebhookUrl } from "./slack.ts";

/** Name of the Slack webhook URL in the settings store's secrets (never listed with the settings). */
export const SLACK_URL_SECRET = "slack_webhook_url";

/** Where the Slack webhook URL comes from: SWITCHYARD_SLACK_WEBHOOK_URL wins over the stored one. */
export function slackWebhookUrl(envUrl: string | null, store: SettingsStore): { url: string | null; source: "env" | "settings" | null } {
  if (envUrl) return { url: envUrl, source: "env" };
  const stored = store.getSecret(SLACK_URL_SECRET);
  return stored ? { url: stored, source: "settings" } : { url: null, source: null };
}

/** The webhook URL as responses and pages show it: redacted, with where it came from. */
export function slackUrlView(resolved: { url: string | null; source: "env" | "settings" | null }): { webhook_url: string | null; source: "env" | "settings" | null } {
  return { webhook_url: resolved.url ? redactWebhookUrl(resolved.url) : null, source: resolved.source };
}
