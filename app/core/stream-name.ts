/** Longest stream name accepted, in characters. */
export const MAX_STREAM_NAME_LENGTH = 200;

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Longest stream name once each '/' counts as 3 characters: the log's Parquet
 * files live under a folder `stream=<name>` with each '/' written %2F, and a
 * folder's name is at most 255 bytes. A name past it was accepted, and no
 * segment holding it could ever be compacted (quarantined after three runs).
 */
export const MAX_STREAM_FOLDER_LENGTH = 248;

/** What a stream name may look like, for error messages. */
export const STREAM_NAME_RULE =
  "segments of [A-Za-z0-9][A-Za-z0-9._-]* joined by '/', at most 200 characters, and at most 248 with each '/' counted as 3";

/**
 * Checks a stream name. Returns null when it is valid, else a sentence that says
 * what is wrong and what is allowed.
 */
export function streamNameProblem(name: string): string | null {
  if (name.length === 0) return `stream name is empty; allowed: ${STREAM_NAME_RULE}`;
  if (name.length > MAX_STREAM_NAME_LENGTH) {
    return `stream name is ${name.length} characters long; allowed: ${STREAM_NAME_RULE}`;
  }
  const segments = name.split("/");
  for (const segment of segments) {
    if (!SEGMENT.test(segment)) {
      const shown = segment === "" ? "an empty segment" : `segment ${JSON.stringify(segment)}`;
      return `stream name ${JSON.stringify(name)} has ${shown}; allowed: ${STREAM_NAME_RULE}`;
    }
  }
  const asFolder = name.length + 2 * (segments.length - 1);
  if (asFolder > MAX_STREAM_FOLDER_LENGTH) {
    return `stream name is ${name.length} characters long with ${segments.length - 1} '/', ${asFolder} with each '/' counted as 3 (the log's folder for it writes '/' as %2F); allowed: ${STREAM_NAME_RULE}`;
  }
  return null;
}

/** System streams start with '$' (never a valid user stream name), e.g. `$streams`. */
export const SYSTEM_STREAM_PREFIX = "$";
