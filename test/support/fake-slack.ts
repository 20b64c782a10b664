/**
 * A local HTTP server that answers like Slack's incoming webhooks, by path:
 * /ok → 200 "ok"; /gone → 404 "no_service"; /bad → 400 "invalid_payload";
 * /slow → never answers; /flaky → 500 for the first `failures` posts, then 200.
 */
export interface FakeSlack {
  url(path: string): string;
  /** The JSON payloads received on /ok and /flaky (after it recovered), in order. */
  received: { text: string; blocks?: unknown[] }[];
  /** Every request seen, on any path. */
  hits: string[];
  stop(): void;
}

/** The secret-looking part of the fake URLs, to check it never leaks. */
export const SECRET_PART = "T0001/B0002/s3cr3tS3cr3tS3cr3t";

export function startFakeSlack(failures = 0): FakeSlack {
  let left = failures;
  const received: FakeSlack["received"] = [];
  const hits: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname.split("/")[1] ?? "";
      hits.push(path);
      const body = await req.text();
      if (path === "slow") return new Promise<Response>(() => {});
      if (path === "gone") return new Response("no_service", { status: 404 });
      if (path === "bad") return new Response("invalid_payload", { status: 400 });
      if (path === "flaky" && left > 0) {
        left--;
        return new Response("internal_error", { status: 500 });
      }
      received.push(JSON.parse(body));
      return new Response("ok");
    },
  });
  return {
    url: (path) => `http://127.0.0.1:${server.port}/${path}/services/${SECRET_PART}`,
    received,
    hits,
    stop: () => server.stop(true),
  };
}
