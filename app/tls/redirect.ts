import type { Server } from "bun";
import type { Logger } from "../core/logger.ts";

/** The path ACME HTTP-01 challenges are fetched under. */
export const CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

/** What the plain-HTTP redirect server needs. */
export interface RedirectOptions {
  host: string;
  port: number;
  /** The HTTPS port to send clients to (443 is left out of the URL). */
  httpsPort(): number;
  /** The answer to an open HTTP-01 challenge token, if any. */
  challenge(token: string): string | undefined;
  logger: Logger;
}

const HOST = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d+)?$/;

/**
 * The plain-HTTP port when TLS is on (80 by default with ACME): ACME HTTP-01
 * challenges are answered, everything else gets 308 to the same path over HTTPS.
 */
export function startRedirectServer(opts: RedirectOptions): Server<undefined> {
  try {
    return Bun.serve({
      hostname: opts.host,
      port: opts.port,
      // Production mode, always: an error never shows Bun's development page or source.
      development: false,
      error(err) {
        opts.logger.warn("redirect port: request failed", { error: err });
        return new Response("the request could not be handled; send a valid request line and Host header\n", { status: 400 });
      },
      fetch(req) {
        let url: URL;
        try {
          url = new URL(req.url);
        } catch {
          // Bun builds req.url from the Host header: "Host: a b" or none (HTTP/1.0) gives no URL.
          return new Response("a valid Host header is needed to redirect to HTTPS (a host name or IP, and an optional port)\n", { status: 400 });
        }
        if (url.pathname.startsWith(CHALLENGE_PREFIX)) {
          const answer = opts.challenge(url.pathname.slice(CHALLENGE_PREFIX.length));
          return answer === undefined
            ? new Response("no such ACME challenge is open\n", { status: 404 })
            : new Response(answer, { headers: { "Content-Type": "application/octet-stream" } });
        }
        const host = HOST.exec(req.headers.get("host") ?? "");
        if (!host) return new Response("a Host header is needed to redirect to HTTPS\n", { status: 400 });
        const port = opts.httpsPort();
        const location = `https://${host[1]}${port === 443 ? "" : `:${port}`}${url.pathname}${url.search}`;
        // 308 keeps the method and body, so an HTTP POST is repeated over HTTPS rather than turned into a GET.
        return new Response(null, { status: 308, headers: { Location: location } });
      },
    });
  } catch (err) {
    throw new Error(`cannot listen on ${opts.host}:${opts.port} for the HTTP-to-HTTPS redirect and ACME challenges: ${(err as Error).message}${opts.port < 1024 ? " (ports below 1024 need CAP_NET_BIND_SERVICE; install.sh gives it)" : ""}`, { cause: err });
  }
}
