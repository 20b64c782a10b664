/** Log levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A structured logger: one line per event, `level msg key=value …`; URL credentials are redacted. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w./:@-]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? "undefined";
}

/** `?token=…` and `&code=…` (stream tokens, relay access codes) wherever a URL lands in a line. */
const SECRET_QUERY = /([?&](?:token|code)=)[^&\s"#]+/gi;

/** A log line with the values of `token` and `code` query parameters replaced, so no credential reaches the log. */
export function redactSecrets(line: string): string {
  return line.replace(SECRET_QUERY, "$1[redacted]");
}

/**
 * Builds a logger that writes lines through `write` (the caller owns the I/O),
 * dropping events below `level`.
 */
export function createLogger(level: LogLevel, write: (line: string) => void, now: () => Date = () => new Date()): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    let line = `${now().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${msg}`;
    if (fields) for (const [k, v] of Object.entries(fields)) line += ` ${k}=${formatValue(v)}`;
    write(redactSecrets(line) + "\n");
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

/** A logger that discards everything (for tests that do not look at logs). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
