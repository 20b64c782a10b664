import type { Hono } from "hono";
import { randomBytes } from "node:crypto";
import { STREAMS_EVENTS_STREAM, type StreamEvent } from "../../hub/stream-events.ts";
import { streamStats } from "../../hub/stream-state.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { requireStreamGrant } from "../stream-access.ts";

/** Events kept for Last-Event-ID resumes. */
const HISTORY = 1000;
/** Events one client may have waiting; past that it gets a fresh snapshot instead (a reader that stops reading holds no more). */
export const SSE_QUEUE_LIMIT = 1000;
/** How long an EventSource waits before reconnecting. */
const RETRY_MS = 3000;

interface Numbered {
  n: number;
  e: StreamEvent;
}

/**
 * The last HISTORY stream events with ids `<boot>-<n>`: the boot part changes
 * with every process, so an id from before a restart is never taken for one of
 * this process's.
 */
class StreamEventHistory {
  readonly boot = randomBytes(4).toString("hex");
  private n = 0;
  private readonly ring: Numbered[] = [];

  add(e: StreamEvent): Numbered {
    const item = { n: ++this.n, e };
    this.ring.push(item);
    if (this.ring.length > HISTORY) this.ring.shift();
    return item;
  }

  id(n: number): string {
    return `${this.boot}-${n}`;
  }

  get lastN(): number {
    return this.n;
  }

  /** The events after `lastId`, or null when that id cannot be resumed from (another process, or too old). */
  since(lastId: string | undefined): Numbered[] | null {
    const m = /^([0-9a-f]+)-(\d+)$/.exec(lastId ?? "");
    if (!m || m[1] !== this.boot) return null;
    const after = Number(m[2]);
    if (after > this.n) return null;
    const oldest = this.ring[0]?.n ?? this.n + 1;
    if (after + 1 < oldest) return null; // some were forgotten: start over with a snapshot
    return this.ring.filter((x) => x.n > after);
  }
}

/** One server-sent event block. */
function sseBlock(fields: { id?: string; event?: string; data?: string; retry?: number }): string {
  let out = "";
  if (fields.retry !== undefined) out += `retry: ${fields.retry}\n`;
  if (fields.id !== undefined) out += `id: ${fields.id}\n`;
  if (fields.event !== undefined) out += `event: ${fields.event}\n`;
  if (fields.data !== undefined) out += `data: ${fields.data}\n`;
  return out + "\n";
}

/**
 * Binds GET /api/events: server-sent events for streams appearing and
 * disappearing (`stream_added`, `stream_removed`), with the same JSON as the
 * websocket system stream `$streams`, each with an `id:`, after a `retry:`.
 * A client that reconnects with `Last-Event-ID` gets the events it missed (from
 * the last 1000 of this process); otherwise, and after falling more than
 * SSE_QUEUE_LIMIT events behind, it gets a `snapshot` of every stream first.
 * The body is pulled: an event is written only when the socket has taken the
 * last one, so a client that stops reading holds at most SSE_QUEUE_LIMIT events.
 * Needs read access to the system stream `$streams`.
 */
export function bindEventRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const history = new StreamEventHistory();
  const clients = new Set<(x: Numbered) => void>();
  deps.hub.onStreamEvent((e) => {
    const x = history.add(e);
    for (const deliver of clients) deliver(x);
  });

  app.get("/api/events", async (c) => {
    const grant = await requireStreamGrant(c, deps, STREAMS_EVENTS_STREAM, "read");
    const resume = history.since(c.req.header("last-event-id"));
    let queue: Numbered[] = resume ?? [];
    let needSnapshot = resume === null;
    let retry: number | undefined = RETRY_MS;
    let closed = false;
    let wake: (() => void) | null = null;
    const deliver = (x: Numbered) => {
      if (queue.length >= SSE_QUEUE_LIMIT) {
        // Too far behind: forget the backlog; a snapshot taken when it is written says where things stand.
        queue = [];
        needSnapshot = true;
      } else queue.push(x);
      wake?.();
    };
    const close = () => {
      closed = true;
      clients.delete(deliver);
      release();
      wake?.();
    };
    // A deny of the token's booking ends it, as it closes the booking's websockets.
    const release = grant.bookingId ? deps.bookings.hold(grant.bookingId, close) : () => {};
    clients.add(deliver);
    c.req.raw.signal.addEventListener("abort", close);
    /** The next block to write, or null when there is none yet. */
    const next = (): string | null => {
      let block: string | null = null;
      if (needSnapshot) {
        needSnapshot = false;
        queue = []; // everything queued happened before this snapshot
        const snapshot = { event: "snapshot", streams: deps.hub.listStreams().map(streamStats), ts: new Date().toISOString() };
        block = sseBlock({ retry, id: history.id(history.lastN), event: "snapshot", data: JSON.stringify(snapshot) });
      } else {
        const x = queue.shift();
        if (x) block = sseBlock({ retry, id: history.id(x.n), event: x.e.event, data: JSON.stringify(x.e) });
        else if (retry !== undefined) block = sseBlock({ retry });
      }
      if (block !== null) retry = undefined;
      return block;
    };
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (!closed) {
          const block = next();
          if (block !== null) return controller.enqueue(encoder.encode(block));
          // Wait for an event, or 15 s for a keepalive comment that lets proxies and clients see a dead peer.
          const timedOut = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(true), 15_000);
            wake = () => { clearTimeout(timer); resolve(false); };
          });
          wake = null;
          if (timedOut && !closed) return controller.enqueue(encoder.encode(": keepalive\n\n"));
        }
        controller.close();
      },
      cancel: close,
    }, { highWaterMark: 0 });
    return new Response(body, { headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no" } });
  });
}
