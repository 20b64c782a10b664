import { resolveStartupConfig, startupParseOptions } from "../config/startup.ts";
import { SettingsStore } from "../config/store.ts";
import { UsageError } from "../core/errors.ts";
import { RELAY_SECRET_NAME, relaySecret, relaySecretProblem, secretFingerprint } from "../relay/relay-secret.ts";
import { TOKEN_SECRET_NAME } from "../server.ts";
import { newTokenSecret } from "../auth/stream-token.ts";
import { openOwnStore } from "./data-dir.ts";
import { parseCommandArgs, type Command } from "./command.ts";

/** What a stream-token secret must look like to be imported (what newTokenSecret makes, or longer). */
const TOKEN_SECRET = /^[A-Za-z0-9_-]{43,512}$/;

/** `switchyard secret set --stdin|show|clear`: import a practable relay's token secret. */
export const secret: Command = {
  name: "secret",
  summary: "import a practable relay's token secret (so its tokens work here), show or clear it; copy the stream-token secret between cluster nodes",
  usage: `Usage:
  switchyard secret set --stdin   read the practable relay's secret from standard input and store it
  switchyard secret show          say whether one is set, where from, and its fingerprint (never the secret)
  switchyard secret clear         remove the stored secret
  switchyard secret export-token-secret
                                  print this data dir's stream-token secret (for the other nodes of a cluster)
  switchyard secret import-token-secret --stdin
                                  replace this data dir's stream-token secret with one read from standard input;
                                  tokens signed with the old one stop working; restart the server to apply it

Cluster nodes accept each other's stream tokens when they share the stream-token
secret: export it on one node and import it on the others (docs/CLUSTER.md).
Only the data dir's owner may export or import it.

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
    if (!action || !["set", "show", "clear", "export-token-secret", "import-token-secret"].includes(action) || rest.length > 0) {
      throw new UsageError(`secret: say what to do: set --stdin, show, clear, export-token-secret or import-token-secret --stdin${action ? ` (not ${JSON.stringify([action, ...rest].join(" "))})` : ""}`);
    }
    if (action === "set" && !values.stdin) throw new UsageError("secret: set reads the secret from standard input: echo \"$SECRET\" | switchyard secret set --stdin");
    if (action === "import-token-secret" && !values.stdin) throw new UsageError("secret: import-token-secret reads the secret from standard input: switchyard secret export-token-secret | switchyard secret import-token-secret --stdin");
    const { config } = resolveStartupConfig(values, io.env);
    if (action === "export-token-secret" || action === "import-token-secret") {
      const own = openOwnStore(config.dataDir, `secret ${action}`, action === "export-token-secret");
      try {
        if (action === "export-token-secret") return io.out(own.secret(TOKEN_SECRET_NAME, newTokenSecret) + "\n"), 0;
        const text = (await new Response(Bun.stdin.stream()).text()).trim();
        if (!TOKEN_SECRET.test(text)) throw new UsageError("secret: import-token-secret: standard input is not a stream-token secret; allowed: what `switchyard secret export-token-secret` prints (43 to 512 characters of A-Z a-z 0-9 _ -)");
        own.setSecret(TOKEN_SECRET_NAME, text);
        io.out(`stored the stream-token secret (fingerprint ${secretFingerprint(text)}); restart the server to apply it\n`);
        return 0;
      } finally {
        own.close();
      }
    }
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
