#!/usr/bin/env bun
import { UsageError } from "./core/errors.ts";
import { admin } from "./cli/admin.ts";
import { checkConfig } from "./cli/check-config.ts";
import { CommandFailed, type Command, type CommandIO } from "./cli/command.ts";
import { query } from "./cli/query.ts";
import { secret } from "./cli/secret.ts";
import { booking } from "./cli/booking.ts";
import { send } from "./cli/send.ts";
import { serve } from "./cli/serve.ts";
import { settings } from "./cli/settings.ts";
import { slack } from "./cli/slack.ts";
import { token } from "./cli/token.ts";
import { version } from "./cli/version.ts";
import { privateUmask } from "./config/private-files.ts";
import { setChildLauncher } from "./core/self-process.ts";

const COMMANDS: Command[] = [serve, send, query, token, admin, settings, secret, booking, slack, version, checkConfig];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "Switchyard: a stream hub (websocket pub/sub, ingest, relays, durable log).",
    "",
    "Usage: switchyard COMMAND [options]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run 'switchyard COMMAND --help' for a command's options.",
  ].join("\n");
}

/** Runs one CLI invocation and returns its exit code: 0 ok, 1 failed, 2 bad usage. */
export async function main(argv: string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(usage() + "\n");
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") return version.run([], io);
  // Internal: the child processes the server starts (the same binary), never typed by hand.
  if (name === "__query-engine" || name === "__compact") (await import("./core/self-process.ts")).lowerOwnThreads();
  if (name === "__query-engine") return (await import("./analytics/query-process.ts")).runQueryProcess();
  if (name === "__compact") return (await import("./log/compact-process.ts")).runCompactProcess();
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    io.err(`switchyard: unknown command ${JSON.stringify(name)}; commands: ${COMMANDS.map((c) => c.name).join(", ")}\n`);
    return 2;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof CommandFailed) {
      io.err(`switchyard ${err.message}\n`);
      return 1;
    }
    if (err instanceof UsageError) {
      io.err(`switchyard ${err.message}\nRun 'switchyard ${command.name} --help' for usage.\n`);
      return 2;
    }
    throw err;
  }
}

if (import.meta.main) {
  // Before anything is written: what Switchyard creates is its user's alone.
  privateUmask();
  setChildLauncher(process.env.SWITCHYARD_CHILD_LAUNCHER);
  const io: CommandIO = {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
  };
  process.exitCode = await main(process.argv.slice(2), io);
}
