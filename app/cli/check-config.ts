import { existsSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_SETTINGS, SETTING_FIELDS, type Settings } from "../config/settings.ts";
import { resolveStartupConfig, startupOptionsHelp, startupParseOptions, withStoredPorts } from "../config/startup.ts";
import { SETTINGS_FILE, SettingsStore } from "../config/store.ts";
import { parseCommandArgs, type Command } from "./command.ts";
import { redactWebhookUrl } from "../alerts/slack.ts";
import { checkTlsFiles } from "../tls/startup-check.ts";

/** `switchyard check-config`: validates flags and environment, shows what `serve` would use. */
export const checkConfig: Command = {
  name: "check-config",
  summary: "validate the configuration and print what serve would use",
  usage: `Usage: switchyard check-config [options]\n\nExits 0 when the configuration is valid, 2 when it is not; unknown\nSWITCHYARD_* variables are reported as warnings.\n\nOptions:\n${startupOptionsHelp()}`,
  async run(argv, io) {
    const { values } = parseCommandArgs("check-config", argv, startupParseOptions);
    if (values.help) return io.out(this.usage + "\n"), 0;
    const resolved = resolveStartupConfig(values, io.env);
    let settings: Settings = DEFAULT_SETTINGS;
    const dbFile = join(resolved.config.dataDir, SETTINGS_FILE);
    if (existsSync(dbFile)) {
      // Opening applies pending migrations, exactly as serve would.
      const store = SettingsStore.open(resolved.config.dataDir);
      settings = store.settings;
      store.close();
    }
    // Ports saved in the settings apply where no flag or variable gave one, as in serve.
    const { config, sources, warnings } = withStoredPorts(resolved, settings);
    const lines = ["startup config:"];
    for (const [k, v] of Object.entries(config)) {
      if (k === "slackWebhookUrl" || k === "s3Credentials" || k === "relaySecret") continue;
      lines.push(`  ${k.padEnd(10)} ${(typeof v === "object" ? JSON.stringify(v) : String(v)).padEnd(30)} (${sources[k as keyof typeof sources]})`);
    }
    if (config.slackWebhookUrl) lines.push(`  slack      ${redactWebhookUrl(config.slackWebhookUrl)} (env SWITCHYARD_SLACK_WEBHOOK_URL)`);
    // Never the keys themselves: only where the credentials come from.
    if (config.relaySecret) lines.push("  relaySecret set (env SWITCHYARD_RELAY_SECRET)");
    if (config.s3Credentials) lines.push(`  s3         credentials set (env ${config.s3Credentials.source})`);
    if (existsSync(dbFile)) {
      lines.push(`runtime settings (from ${dbFile}):`);
    } else {
      lines.push(`runtime settings (defaults; ${dbFile} is created at first start):`);
    }
    for (const k of Object.keys(SETTING_FIELDS) as (keyof Settings)[]) {
      lines.push(`  ${k.padEnd(26)} ${JSON.stringify(settings[k])}${SETTING_FIELDS[k].restart ? "  (restart to change)" : ""}`);
    }
    for (const w of warnings) lines.push(`warning: ${w}`);
    // The certificate files are checked as serve checks them at start (the same clear error).
    const tlsLine = checkTlsFiles(config);
    if (tlsLine) lines.push(tlsLine);
    lines.push("configuration is valid");
    io.out(lines.join("\n") + "\n");
    return 0;
  },
};
