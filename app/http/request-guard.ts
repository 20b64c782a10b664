import { PERCENT_ENCODING_RULE } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { bodyLimitFor, tooLargeMessage } from "./body.ts";
import { errorBody } from "./errors.ts";
import { WS_PREFIX } from "../sources/websocket.ts";

/** True when `text` is valid percent-encoding (decodeURIComponent would not throw). */
export function decodes(text: string): boolean {
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}

/** A request that passed the first look, with its parsed URL. */
export interface ScreenedRequest {
  url: URL;
}

/** A refusal as the API's JSON error; a 413 also closes the connection so the rest of the body is never read. */
function refuse(status: 400 | 413, message: string): Response {
  return Response.json(errorBody(status, message), { status, headers: status === 413 ? { Connection: "close" } : undefined });
}

/**
 * The first look at every request, before any route or upgrade: a URL that does
 * not parse (a bad Host header), a path that is not valid percent-encoding
 * (but /ws/…, whose handler answers with a close frame), or a
 * declared body over the route's limit is refused here with a one-line reason
 * (400 or 413) and one short debug log line. Bodies without a Content-Length
 * are held to the same limits by the readers of each route.
 */
export function screenRequest(req: Request, maxMessageBytes: number, logger: Logger): ScreenedRequest | Response {
  const refused = (status: 400 | 413, reason: string) => {
    logger.debug("request refused", { method: req.method, status, reason });
    return refuse(status, reason);
  };
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return refused(400, "the request URL does not parse: check the Host header (a host name or address, with an optional :port)");
  }
  // /ws/{stream} answers a bad name, this one too, with a close frame a browser can read (see upgradeStream).
  if (!url.pathname.startsWith(WS_PREFIX) && !decodes(url.pathname)) {
    return refused(400, `the path is not valid percent-encoding: ${PERCENT_ENCODING_RULE}`);
  }
  const limit = bodyLimitFor(req.method, url.pathname, maxMessageBytes, req.headers.get("content-type"));
  const declared = req.headers.get("content-length");
  if (limit && declared !== null && Number(declared) > limit.bytes) {
    return refused(413, tooLargeMessage(Number(declared), limit));
  }
  return { url };
}
