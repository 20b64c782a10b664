const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };

/** The accepted duration syntax, for error messages. */
export const DURATION_RULE = "a number with a unit: ms, s, m, h, d, w or y (e.g. 30s, 10m, 365d); a bare number is seconds";

/** Parses "90s", "10m", "365d", "1y" or a bare number of seconds into seconds; null when invalid. */
export function parseDurationSeconds(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * (UNITS[m[2] ?? "s"] ?? 1);
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };

/** The accepted size syntax, for error messages. */
export const SIZE_RULE = "a number of bytes, optionally with a unit: KiB, MiB or GiB (e.g. 65536, 64KiB, 1MiB)";

/** Parses "1MiB", "64k", "4096" into bytes; null when invalid. */
export function parseBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return null;
  const unit = SIZE_UNITS[(m[2] ?? "").toLowerCase()];
  if (unit === undefined) return null;
  return Math.floor(Number(m[1]) * unit);
}
