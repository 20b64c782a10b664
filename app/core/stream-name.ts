/** Longest stream name accepted, in characters. */
export const MAX_STREAM_NAME_LENGTH = 200;

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** What a stream name may look like, for error messages. */
export const STREAM_NAME_RULE =
  "segments of [A-Za-z0-9][A-Za-z0-9._-]* joined by '/', at most 200 characters";

/**
 * Checks a stream name. Returns null when it is valid, else a sentence that says
 * what is wrong and what is allowed.
 */
export function streamNameProblem(name: string): string | null {
  if (name.length === 0) return `stream name is empty; allowed: ${STREAM_NAME_RULE}`;
  if (name.length > MAX_STREAM_NAME_LENGTH) {
    return `stream name is ${name.length} characters long; allowed: ${STREAM_NAME_RULE}`;
  }
  for (const segment of name.split("/")) {
    if (!SEGMENT.test(segment)) {
      const shown = segment === "" ? "an empty segment" : `segment ${JSON.stringify(segment)}`;
      return `stream name ${JSON.stringify(name)} has ${shown}; allowed: ${STREAM_NAME_RULE}`;
    }
  }
  return null;
}

/** System streams start with '$' (never a valid user stream name), e.g. `$streams`. */
export const SYSTEM_STREAM_PREFIX = "$";
