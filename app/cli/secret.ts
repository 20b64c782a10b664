import { resolveStartupConfig, startupParseOptions } from "../config/startup.ts";
import { SettingsStore } from "../config/store.ts";
import { UsageError } from "../core/errors.ts";
import { RELAY_SECRET_NAME, relaySecret, relaySecretProblem, secretFingerprint } from "../relay/relay-secret.ts";
import { parseCommandArgs, type Command } from "./command.ts";

/** `switchyard secret set --stdin|show|clear`: import a practable relay's token secret. */
export const secret: Command = {
  name: "secret",
  summary: "import a practable relay's token secret (so its tokens work here), show or clear it",
  usage: `Usage:
  switchyard secret set --stdin   read the practable relay's secret from standard input and store it
  switchyard secret show          say whether one is set, where from, and its fingerprint (never the secret)
  switchyard secret clear         remove the stored secret

Tokens signed with this secret (a lab's year-long device tokens, made by practable's
\`relay token\` or configure script) are accepted on /ws, /session and the relay's
access step, and \`switchyard token --relay-secret\` signs new ones with it.
SWITCHYARD_RELAY_SECRET, when set, wins over the stored secret. The secret is read
from stdin only (an argument would show in \`ps\` and the shell history).

Options:
  --data-dir DIR    the data dir whose settings store holds it (default ./data)`,
  async run(argv, io) {
    const { values, positionals } = parseCommandArgs("secret", argv, { ...startupParseOptions, stdin: { type: "boolean" } }, true);
    if (values.help) return io.out(this.usage + "\n"), 0;
    const [action, ...rest] = positionals;
    if (!action || !["set", "show", "clear"].includes(action) || rest.length > 0) {
      throw new UsageError(`secret: say what to do: set --stdin, show or clear${action ? ` (not ${JSON.stringify([action, ...rest].join(" "))})` : ""}`);
    }
    if (action === "set" && !values.stdin) throw new UsageError("secret: set reads the secret from standard input: echo \"$SECRET\" | switchyard secret set --stdin");
    const { config } = resolveStartupConfig(values, io.env);
    const store = SettingsStore.open(config.dataDir);
    try {
      if (action === "set") {
        const text = (await new Response(Bun.stdin.stream()).text()).replace(/\r?\n$/, "");
        const problem = relaySecretProblem(text);
        if (problem) throw new UsageError(`secret: ${problem}`);
        store.setSecret(RELAY_SECRET_NAME, text);
        io.out(`stored the practable relay secret (fingerprint ${secretFingerprint(text)})\n`);
        if (config.relaySecret) io.out("note: SWITCHYARD_RELAY_SECRET is set and wins over the stored secret\n");
        return 0;
      }
      if (action === "clear") {
        store.setSecret(RELAY_SECRET_NAME, null);
        io.out("removed the stored practable relay secret\n");
        return 0;
      }
      const { secret: value, source } = relaySecret(config.relaySecret, store);
      io.out(value ? `set (from ${source === "env" ? "SWITCHYARD_RELAY_SECRET" : "the settings store"}), fingerprint ${secretFingerprint(value)}\n` : "no practable relay secret is set\n");
      return 0;
    } finally {
      store.close();
    }
  },
};
