import { generatePassword, PASSWORD_RULE, passwordProblem, setAdminPassword } from "../auth/admin-account.ts";
import { resolveStartupConfig, startupParseOptions } from "../config/startup.ts";
import { SettingsStore } from "../config/store.ts";
import { UsageError } from "../core/errors.ts";
import { parseCommandArgs, type Command } from "./command.ts";

/** Reads standard input to its end (for --password-stdin). */
async function readStdin(): Promise<string> {
  return await new Response(Bun.stdin.stream()).text();
}

/** `switchyard admin password`: sets the admin UI's password (signing every session out). */
export const admin: Command = {
  name: "admin",
  summary: "set the admin UI's password (switchyard admin password)",
  usage: `Usage: switchyard admin password [--password-stdin] [--data-dir DIR]

Sets a new password for the admin UI (user "admin") and signs out every session.
Without --password-stdin a random password is made and printed once.
A running server sees the new password at once (same data dir).

Options:
  --password-stdin  read the new password from standard input (${PASSWORD_RULE}; one trailing newline is dropped)
  --data-dir DIR    the data dir whose settings store holds the password (default ./data)`,
  async run(argv, io) {
    const { values, positionals } = parseCommandArgs("admin", argv, { ...startupParseOptions, "password-stdin": { type: "boolean" } }, true);
    if (values.help) return io.out(this.usage + "\n"), 0;
    if (positionals[0] !== "password" || positionals.length !== 1) {
      throw new UsageError(`admin: ${positionals.length ? `unknown subcommand ${JSON.stringify(positionals.join(" "))}` : "a subcommand is required"}; allowed: password`);
    }
    let password: string;
    let generated = false;
    if (values["password-stdin"]) {
      password = (await readStdin()).replace(/\r?\n$/, "");
      const problem = passwordProblem(password);
      if (problem) throw new UsageError(`admin password: the password read from standard input is not valid; ${problem}`);
    } else {
      password = generatePassword();
      generated = true;
    }
    const { config } = resolveStartupConfig(values, io.env);
    const store = SettingsStore.open(config.dataDir);
    try {
      await setAdminPassword(store, config.dataDir, password);
    } finally {
      store.close();
    }
    io.out(generated ? `new admin password (shown once): ${password}\n` : "admin password changed\n");
    return 0;
  },
};
