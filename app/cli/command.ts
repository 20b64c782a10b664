import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../core/errors.ts";

/** What a command can write to and read from, passed in so tests can capture it. */
export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
}

/** One CLI command, in its own file. `run` returns the exit code. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[], io: CommandIO): Promise<number>;
}

/** A command that could not do its job for a reason the user can act on: printed as is, exit code 1. */
export class CommandFailed extends Error {
  override name = "CommandFailed";
}

/**
 * node:util parseArgs, strict, with `--help` added; its errors become UsageError
 * (exit code 2) with the message saying what was wrong.
 */
export function parseCommandArgs<O extends NonNullable<ParseArgsConfig["options"]>>(command: string, argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals });
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, "");
    throw new UsageError(`${command}: ${msg}`);
  }
}
