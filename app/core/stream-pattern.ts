/** What an allow-list pattern may look like, for error messages. */
export const STREAM_PATTERN_RULE = "stream-name characters [A-Za-z0-9._/-] with * for any run of characters (e.g. spin*, lab/*/cam)";

const PATTERN = /^[A-Za-z0-9._\/*-]+$/;

/** Checks one pattern; null when valid, else what is wrong and what is allowed. */
export function streamPatternProblem(pattern: unknown): string | null {
  return typeof pattern === "string" && PATTERN.test(pattern) ? null : `${JSON.stringify(pattern)} is not a pattern; allowed: ${STREAM_PATTERN_RULE}`;
}

/**
 * Compiles glob patterns (`*` matches any run of characters, `/` included) into
 * one matcher. An empty list matches every stream.
 */
export function compileStreamPatterns(patterns: readonly string[]): (stream: string) => boolean {
  if (patterns.length === 0) return () => true;
  const escaped = patterns.map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*"));
  const re = new RegExp(`^(?:${escaped.join("|")})$`);
  return (stream) => re.test(stream);
}

/**
 * A matcher over patterns that can change at run time (a setting): recompiled
 * only when the list changes, so the hot path pays one comparison, not a regex build.
 */
export function livePatterns(get: () => readonly string[]): (stream: string) => boolean {
  let list: readonly string[] | null = null;
  let match: (stream: string) => boolean = () => false;
  return (stream) => {
    const now = get();
    if (now !== list) {
      list = now;
      match = now.length === 0 ? () => false : compileStreamPatterns(now);
    }
    return match(stream);
  };
}
