import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { processAlive } from "../core/self-process.ts";

/**
 * DATA_DIR/server.json says where the server of a data dir answers, so the CLI
 * (`switchyard settings set`) can apply a change live. Mode 0600 like the rest of
 * the data dir's secrets: only who can read the data dir learns it, and a client
 * still needs an admin token to use it.
 */
export const SERVER_FILE = "server.json";

/** What the server file holds. */
export interface ServerFile {
  pid: number;
  /** A URL the box itself reaches the server at, e.g. http://127.0.0.1:8888 (https:// with TLS on). */
  url: string;
  /** With TLS on: the DNS name the certificate is for, checked while dialing the URL's address. */
  tlsName?: string;
}

/** The URL a client on the box uses for a server listening on `host`:`port`. */
export function localUrl(host: string, port: number): string {
  const h = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `http://${h}:${port}`;
}

/** Writes the server file of a data dir (at start): whole or not at all (temp file, then rename). */
export function writeServerFile(dataDir: string, file: ServerFile): void {
  const tmp = join(dataDir, `${SERVER_FILE}.tmp`);
  try {
    writeFileSync(tmp, JSON.stringify(file) + "\n", { mode: 0o600 });
    renameSync(tmp, join(dataDir, SERVER_FILE));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** The server file of a data dir, or null when there is none (or it is not readable). */
export function readServerFile(dataDir: string): ServerFile | null {
  try {
    const f = JSON.parse(readFileSync(join(dataDir, SERVER_FILE), "utf8")) as ServerFile;
    return typeof f.pid === "number" && typeof f.url === "string" ? f : null;
  } catch {
    return null;
  }
}

/** The server file of a data dir when its process still runs (a kill -9 leaves a stale one), or null. */
export function runningServer(dataDir: string): ServerFile | null {
  const f = readServerFile(dataDir);
  if (!f) return null;
  return processAlive(f.pid) ? f : null;
}

/** Removes the server file at stop, when it is still this process's. */
export function removeServerFile(dataDir: string, pid: number): void {
  if (readServerFile(dataDir)?.pid === pid) rmSync(join(dataDir, SERVER_FILE), { force: true });
}
