import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { HttpEnv } from "../deps.ts";
import { bodyLimitFor, readFormCapped, type BodyLimit, type FormValues } from "../body.ts";

const forms = new WeakMap<Request, Promise<FormValues>>();

/**
 * The posted form of this request, read once (capped at the route's body limit,
 * 413 above it) however many times the handler asks.
 */
function postedForm(c: Context<HttpEnv>, limit?: BodyLimit): Promise<FormValues> {
  let form = forms.get(c.req.raw);
  if (!form) {
    // Only the publish form's limit depends on settings; it passes its own.
    form = readFormCapped(c.req.raw, limit ?? bodyLimitFor(c.req.method, c.req.path, 0)!);
    forms.set(c.req.raw, form);
  }
  return form;
}

/** The fields of a posted form as strings (repeated fields: the last; see formAll). */
export async function formFields(c: Context<HttpEnv>, limit?: BodyLimit): Promise<Record<string, string>> {
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of await postedForm(c, limit)) out[k] = v.at(-1)!;
  return out;
}

/** Every value of a repeated form field (checkboxes). */
export async function formAll(c: Context<HttpEnv>, name: string): Promise<string[]> {
  return (await postedForm(c)).get(name) ?? [];
}

/** True for requests htmx made (they get fragments; plain requests get whole pages). */
export function isHtmx(c: Context<HttpEnv>): boolean {
  return c.req.header("hx-request") === "true";
}

/** Renders a JSX element to its HTML text. */
export async function html(el: unknown): Promise<string> {
  return String(await (el as { toString(): string | Promise<string> }).toString());
}

/**
 * Server-sent events for a live page: every `everyMs`, `render()` gives the HTML
 * of each part by event name; a part goes out when it changed (all at first),
 * with a comment every 5 s otherwise so dead connections are seen.
 */
export function livePage(c: Context<HttpEnv>, render: () => Promise<Record<string, string>>, everyMs = 1000, setup?: (send: (event: string, data: string) => Promise<void>) => () => void) {
  return streamSSE(c, async (sse) => {
    const last = new Map<string, string>();
    let quiet = 0;
    const send = async (event: string, data: string) => {
      if (!sse.aborted) await sse.writeSSE({ event, data });
    };
    const stop = setup?.(send);
    try {
      while (!sse.aborted) {
        const parts = await render();
        let sent = false;
        for (const [event, data] of Object.entries(parts)) {
          if (last.get(event) === data) continue;
          last.set(event, data);
          await send(event, data);
          sent = true;
        }
        quiet = sent ? 0 : quiet + everyMs;
        if (quiet >= 5000 && !sse.aborted) {
          await sse.write(": keepalive\n\n");
          quiet = 0;
        }
        await sse.sleep(everyMs);
      }
    } finally {
      stop?.();
    }
  });
}
