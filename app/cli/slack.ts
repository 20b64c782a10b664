import { sendTestMessage } from "../alerts/message.ts";
import { redactWebhookUrl, webhookUrlProblem } from "../alerts/slack.ts";
import { SLACK_URL_SECRET, slackWebhookUrl } from "../alerts/webhook-url.ts";
import { resolveStartupConfig, startupParseOptions } from "../config/startup.ts";
import { SettingsStore } from "../config/store.ts";
import { UsageError } from "../core/errors.ts";
import { parseCommandArgs, type Command } from "./command.ts";

/** `switchyard slack test|set-url|show`: check and set up Slack alerts from a shell. */
export const slack: Command = {
  name: "slack",
  summary: "test Slack alerts, or set or show the webhook URL",
  usage: `Usage:
  switchyard slack test [--text TEXT]   send a test message; exit 0 if Slack accepted it, 1 if not (and why)
  switchyard slack set-url URL          store the incoming-webhook URL (use "" to remove it)
  switchyard slack show                 show the URL in force (redacted) and where it comes from

The URL comes from SWITCHYARD_SLACK_WEBHOOK_URL if set, else from the settings
store in --data-dir (default ./data). It is never printed in full.`,
  async run(argv, io) {
    const { values, positionals } = parseCommandArgs("slack", argv, { ...startupParseOptions, text: { type: "string" }, timeout: { type: "string" } }, true);
    if (values.help) return io.out(this.usage + "\n"), 0;
    const [action, ...rest] = positionals;
    if (!action || !["test", "set-url", "show"].includes(action)) throw new UsageError(`slack: say what to do: test, set-url URL or show${action ? ` (not ${JSON.stringify(action)})` : ""}`);
    const { config } = resolveStartupConfig(values, io.env);
    const store = SettingsStore.open(config.dataDir);
    try {
      if (action === "set-url") {
        if (rest.length !== 1) throw new UsageError("slack: set-url takes one URL (\"\" removes it)");
        const url = rest[0]!;
        if (url !== "") {
          const problem = webhookUrlProblem(url);
          if (problem) throw new UsageError(`slack: ${problem}`);
        }
        store.setSecret(SLACK_URL_SECRET, url || null);
        io.out(url ? `stored ${redactWebhookUrl(url)}\n` : "removed the stored webhook URL\n");
        if (config.slackWebhookUrl) io.out("note: SWITCHYARD_SLACK_WEBHOOK_URL is set and wins over the stored URL\n");
        return 0;
      }
      const { url, source } = slackWebhookUrl(config.slackWebhookUrl, store);
      if (action === "show") {
        io.out(url ? `${redactWebhookUrl(url)} (from ${source === "env" ? "SWITCHYARD_SLACK_WEBHOOK_URL" : "the settings store"})\n` : "no webhook URL is set\n");
        return 0;
      }
      if (!url) {
        io.err("no Slack webhook URL is set: switchyard slack set-url URL, or SWITCHYARD_SLACK_WEBHOOK_URL\n");
        return 1;
      }
      const timeoutSeconds = values.timeout === undefined ? 10 : Number(values.timeout);
      if (!(timeoutSeconds > 0 && timeoutSeconds <= 120)) throw new UsageError(`slack: --timeout: ${JSON.stringify(values.timeout)} is not valid; allowed: seconds from 1 to 120`);
      const result = await sendTestMessage(url, values.text, timeoutSeconds * 1000);
      if (result.ok) {
        io.out(`${result.message}\n`);
        return 0;
      }
      io.err(`Slack did not accept the message: ${result.message}\n`);
      return 1;
    } finally {
      store.close();
    }
  },
};
