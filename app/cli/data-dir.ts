import { accessSync, constants, existsSync } from "node:fs";
import { join } from "node:path";
import { SETTINGS_FILE, SettingsStore } from "../config/store.ts";
import { CommandFailed } from "./command.ts";

/**
 * Opens the settings store of a data dir for a command that holds its secrets
 * (admin tokens, settings): only whoever can read and write DATA_DIR/switchyard.db
 * (mode 0600, the service's user) may. Anyone else gets a clear refusal, not a
 * SQLite error. With `mustExist`, a data dir without a store is refused too.
 */
export function openOwnStore(dataDir: string, command: string, mustExist = false): SettingsStore {
  const file = join(dataDir, SETTINGS_FILE);
  if (existsSync(file)) {
    try {
      accessSync(file, constants.R_OK | constants.W_OK);
    } catch {
      throw new CommandFailed(`${command}: cannot read ${file}: permission denied. Only the data dir's owner may do this; run it as that user (e.g. sudo -u switchyard switchyard ${command} --data-dir ${dataDir})`);
    }
  } else if (mustExist) {
    throw new CommandFailed(`${command}: there is no settings store in ${dataDir} (no ${SETTINGS_FILE}); pass the server's --data-dir`);
  }
  try {
    return SettingsStore.open(dataDir);
  } catch (err) {
    throw new CommandFailed(`${command}: cannot open the settings store in ${dataDir}: ${(err as Error).message}`);
  }
}
