import { duckdbVersion } from "../../native/version.ts";
import { COMMIT, VERSION } from "../version.ts";
import { parseCommandArgs, type Command } from "./command.ts";

/** `switchyard version`: version, commit, platform, Bun and DuckDB versions. */
export const version: Command = {
  name: "version",
  summary: "print version, commit, platform, Bun and DuckDB versions",
  usage: "Usage: switchyard version [--json]",
  async run(argv, io) {
    const { values } = parseCommandArgs("version", argv, { json: { type: "boolean" } });
    if (values.help) return io.out(this.usage + "\n"), 0;
    const duckdb = await duckdbVersion();
    const info = { version: VERSION, commit: COMMIT, platform: `${process.platform}-${process.arch}`, bun: Bun.version, ...duckdb };
    if (values.json) return io.out(JSON.stringify(info) + "\n"), 0;
    const duck = "duckdb_error" in duckdb ? "duckdb not available" : `duckdb ${duckdb.duckdb}`;
    io.out(`switchyard ${info.version} (commit ${info.commit}, ${info.platform}, bun ${info.bun}, ${duck})\n`);
    io.out("duckdb_error" in duckdb ? `duckdb: ${duckdb.duckdb_error}\n` : `duckdb library: ${duckdb.duckdb_source}\n`);
    return 0;
  },
};
