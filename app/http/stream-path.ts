import { badRequest } from "../core/errors.ts";

/** Where the stream API lives: /api/streams/{name}, and its messages below it. */
export const PREFIX = "/api/streams/";
export const MESSAGES = "/messages";
/** A stream followed as server-sent events: /api/streams/{name}/events. */
export const EVENTS = "/events";

/** The stream name in a path below /api/streams/, with %2F kept inside a name. */
export function streamFromPath(url: string, suffix = ""): string {
  const raw = new URL(url).pathname.slice(PREFIX.length, suffix ? -suffix.length : undefined);
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest(`stream name in the path is not valid percent-encoding: ${JSON.stringify(raw)}`);
  }
}
