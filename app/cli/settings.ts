import { adminTokenSecret, signAdminToken } from "../auth/admin-token.ts";
import { DEFAULT_SETTINGS, SETTING_FIELDS, type Settings } from "../config/settings.ts";
import { runningServer } from "../config/server-file.ts";
import { resolveStartupConfig, startupParseOptions } from "../config/startup.ts";
import { InvalidInput, UsageError } from "../core/errors.ts";
import { CommandFailed, parseCommandArgs, type Command, type CommandIO } from "./command.ts";
import { openOwnStore } from "./data-dir.ts";

/** A value as the shell shows it: strings as they are, everything else as JSON. */
function shown(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * VALUE from the command line: for a text setting the text itself (a JSON string
 * literal is unquoted), for the others JSON (true, 42, ["a*"], null); text that is
 * not JSON is passed on as a string, so validation names the setting and what it allows.
 */
export function parseSettingValue(key: string, text: string): unknown {
  const textual = typeof DEFAULT_SETTINGS[key as keyof Settings] === "string";
  if (textual && !text.startsWith('"')) return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A live server of the data dir answered: true; it is not running (or unreachable): false. */
async function applyLive(url: string, token: string, patch: Record<string, unknown>, key: string, io: CommandIO, tlsName?: string): Promise<boolean> {
  let res: Response;
  try {
    res = await fetch(`${url}/api/settings`, {
      method: "PATCH", body: JSON.stringify(patch),
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, signal: AbortSignal.timeout(10_000),
      // A TLS server is dialed on loopback; its certificate is checked for the name it was issued for.
      ...(tlsName ? { tls: { serverName: tlsName } } : {}),
    });
  } catch {
    return false;
  }
  const body = (await res.json().catch(() => null)) as { settings?: Settings; restart_needed?: string[]; error?: { message?: string } } | null;
  if (!res.ok) throw new CommandFailed(`settings set: ${body?.error?.message ?? `the server at ${url} answered ${res.status}`}`);
  io.out(`${key} = ${shown(body?.settings?.[key as keyof Settings])} (applied to the running server at ${url})\n`);
  if (body?.restart_needed?.length) io.out(`note: ${body.restart_needed.join(", ")} takes effect after a restart\n`);
  return true;
}

/** `switchyard settings get|set`: the runtime settings from a shell, as PATCH /api/settings, for whoever owns the data dir. */
export const settings: Command = {
  name: "settings",
  summary: "show or change a runtime setting (applied live when the server runs)",
  usage: `Usage: switchyard settings get [KEY] [--data-dir DIR]
       switchyard settings set KEY VALUE [--data-dir DIR]

get prints one setting (text as is, other values as JSON), or all of them as JSON.
set validates VALUE as PATCH /api/settings does (same messages) and, when the
server of DIR runs, applies it live through its API with a short-lived admin
token; otherwise it stores it for the next start. VALUE is JSON (true, 42,
["10.0.0.0/8"], null) except for text settings, which take the text itself.

Only whoever can read and write the data dir's settings store (the service's
user; root) may use this command.

Options:
  --data-dir DIR    the server's data dir (default ./data)`,
  async run(argv, io) {
    const { values, positionals } = parseCommandArgs("settings", argv, startupParseOptions, true);
    if (values.help) return io.out(this.usage + "\n"), 0;
    const [action, ...rest] = positionals;
    if (action !== "get" && action !== "set") throw new UsageError(`settings: say what to do: get [KEY] or set KEY VALUE${action ? ` (not ${JSON.stringify(action)})` : ""}`);
    const { config } = resolveStartupConfig(values, io.env);
    const key = rest[0];

    if (action === "get") {
      if (rest.length > 1) throw new UsageError("settings: get takes at most one KEY");
      const known = Object.keys(SETTING_FIELDS);
      if (key !== undefined && !known.includes(key)) throw new UsageError(`settings: unknown setting ${JSON.stringify(key)}; known: ${known.join(", ")}`);
      const store = openOwnStore(config.dataDir, "settings get", true);
      try {
        io.out((key === undefined ? JSON.stringify(store.settings, null, 2) : shown(store.settings[key as keyof Settings])) + "\n");
      } finally {
        store.close();
      }
      return 0;
    }

    if (rest.length !== 2 || key === undefined) throw new UsageError("settings: set takes KEY VALUE, e.g. switchyard settings set access token");
    const patch = { [key]: parseSettingValue(key, rest[1]!) };
    const store = openOwnStore(config.dataDir, "settings set");
    try {
      const running = runningServer(config.dataDir);
      if (running && (await applyLive(running.url, await signAdminToken(adminTokenSecret(store), 60), patch, key, io, running.tlsName))) return 0;
      let after: Settings;
      try {
        after = store.update(patch);
      } catch (err) {
        if (err instanceof InvalidInput) throw new CommandFailed(`settings set: ${err.message}`);
        throw err;
      }
      io.out(`${key} = ${shown(after[key as keyof Settings])} (stored; the server is not running, so it applies when it next starts)\n`);
      return 0;
    } finally {
      store.close();
    }
  },
};
