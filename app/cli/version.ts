import { COMMIT, VERSION } from "../version.ts";
import { parseCommandArgs, type Command } from "./command.ts";

/** `switchyard version`: version, commit, platform and Bun version. */
export const version: Command = {
  name: "version",
  summary: "print version, commit, platform and Bun version",
  usage: "Usage: switchyard version [--json]",
  async run(argv, io) {
    const { values } = parseCommandArgs("version", argv, { json: { type: "boolean" } });
    if (values.help) return io.out(this.usage + "\n"), 0;
    const info = { version: VERSION, commit: COMMIT, platform: `${process.platform}-${process.arch}`, bun: Bun.version };
    io.out(values.json ? JSON.stringify(info) + "\n" : `switchyard ${info.version} (commit ${info.commit}, ${info.platform}, bun ${info.bun})\n`);
    return 0;
  },
};
