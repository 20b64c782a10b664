import { resolveStartupConfig, startupOptionsHelp, startupParseOptions, withStoredPorts } from "../config/startup.ts";
import { SettingsStore } from "../config/store.ts";
import { securePrivateDataDir } from "../config/private-files.ts";
import { createLogger } from "../core/logger.ts";
import { prepareNativeAtStart } from "../../native/startup.ts";
import { unpackNativeUnder } from "../../native/load.ts";
import { startServer } from "../server.ts";
import { VERSION } from "../version.ts";
import { parseCommandArgs, type Command } from "./command.ts";

/** `switchyard serve`: runs the hub until SIGINT or SIGTERM. */
export const serve: Command = {
  name: "serve",
  summary: "run the hub (HTTP, websockets) until stopped",
  usage: `Usage: switchyard serve [options]\n\nOptions:\n${startupOptionsHelp()}`,
  async run(argv, io) {
    const { values } = parseCommandArgs("serve", argv, startupParseOptions);
    if (values.help) return io.out(this.usage + "\n"), 0;
    const resolved = resolveStartupConfig(values, io.env);
    const logger = createLogger(resolved.config.logLevel, io.err);
    for (const w of resolved.warnings) logger.warn(w);
    securePrivateDataDir(resolved.config.dataDir, logger);
    const store = SettingsStore.open(resolved.config.dataDir, (why) => logger.warn(why));
    const { config, sources } = withStoredPorts(resolved, store.settings);
    if (store.appliedMigrations.length > 0) logger.info("settings store migrated", { applied: store.appliedMigrations.join(",") });
    logger.info("switchyard starting", { version: VERSION, pid: process.pid });
    unpackNativeUnder(config.dataDir, io.env);
    prepareNativeAtStart(logger);
    let running;
    try {
      running = await startServer({ config, configSources: sources, store, logger });
    } catch (err) {
      logger.error("switchyard could not start", { error: err });
      store.close();
      return 1;
    }
    await new Promise<void>((resolve) => {
      const shutdown = (signal: string) => {
        logger.info("shutting down", { signal });
        running.stop().then(resolve);
      };
      process.once("SIGINT", () => shutdown("SIGINT"));
      process.once("SIGTERM", () => shutdown("SIGTERM"));
    });
    store.close();
    // Everything is closed; should a stray handle remain, do not let it hold the exit.
    setTimeout(() => process.exit(0), 200).unref();
    return 0;
  },
};
