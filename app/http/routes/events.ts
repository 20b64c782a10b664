import type { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { STREAMS_EVENTS_STREAM, type StreamEvent } from "../../hub/hub.ts";
import { streamStats } from "../../hub/stream-state.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { requireStreamGrant } from "../stream-access.ts";

/**
 * Binds GET /api/events: server-sent events for streams appearing and
 * disappearing (`stream_added`, `stream_removed`), after a first `snapshot`.
 * Needs read access to the system stream `$streams`.
 */
export function bindEventRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/api/events", async (c) => {
    await requireStreamGrant(c, deps, STREAMS_EVENTS_STREAM, "read");
    return streamSSE(c, async (sse) => {
      const queue: StreamEvent[] = [];
      let wake: (() => void) | null = null;
      const off = deps.hub.onStreamEvent((e) => {
        queue.push(e);
        wake?.();
      });
      sse.onAbort(() => {
        off();
        wake?.();
      });
      await sse.writeSSE({ event: "snapshot", data: JSON.stringify({ streams: deps.hub.listStreams().map(streamStats) }) });
      while (!sse.aborted) {
        const e = queue.shift();
        if (e) {
          await sse.writeSSE({ event: e.event, data: JSON.stringify(e) });
          continue;
        }
        // Wait for an event, or 15 s for a keepalive comment that lets proxies and clients see a dead peer.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 15_000);
          wake = () => { clearTimeout(timer); resolve(); };
        });
        wake = null;
        if (queue.length === 0 && !sse.aborted) await sse.write(": keepalive\n\n");
      }
      off();
    });
  });
}
