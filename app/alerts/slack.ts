import { IncomingWebhook, IncomingWebhookHTTPError, IncomingWebhookRequestError, type IncomingWebhookSendArguments } from "@slack/webhook";

/** A Slack message: blocks for Slack, `text` as the plain fallback (notifications, old clients). */
export type SlackMessage = IncomingWebhookSendArguments & { text: string };

/** What came of a send, in words an operator can act on. */
export type SlackResult =
  | { ok: true; message: string }
  | { ok: false; reason: "bad_url" | "not_found" | "invalid_payload" | "http" | "timeout" | "network"; status?: number; message: string };

/** Checks a webhook URL's form; null when usable, else what is wrong. */
export function webhookUrlProblem(url: string): string | null {
  let u: URL;
  try { u = new URL(url); } catch { return "the webhook URL is not a URL; it looks like https://hooks.slack.com/services/T…/B…/…"; }
  if (u.protocol !== "https:" && u.protocol !== "http:") return `the webhook URL must be https:// (it is ${u.protocol})`;
  return null;
}

/** The URL with its secret part hidden: scheme, host and the first path segment only. */
export function redactWebhookUrl(url: string): string {
  try {
    const u = new URL(url);
    const first = u.pathname.split("/").filter(Boolean)[0];
    return `${u.protocol}//${u.host}/${first ? `${first}/` : ""}…(redacted)`;
  } catch {
    return "(redacted)";
  }
}

/**
 * Sends one message to a Slack incoming webhook with @slack/webhook and turns
 * every failure into a reason and a sentence (bad URL, 404 no_service, 400
 * invalid_payload, time-out, no network). Never throws; never puts the URL in a message.
 */
export async function sendToSlack(url: string, message: SlackMessage, timeoutMs = 10_000, signal?: AbortSignal): Promise<SlackResult> {
  const problem = webhookUrlProblem(url);
  if (problem) return { ok: false, reason: "bad_url", message: problem };
  // `signal` lets a shutdown cancel a send in flight; @slack/webhook takes a fetch of our own for that.
  const fetchWithSignal: typeof fetch = Object.assign(
    (input: string | URL | Request, init?: RequestInit) => fetch(input, { ...init, signal: signal && init?.signal ? AbortSignal.any([signal, init.signal]) : signal ?? init?.signal }),
    { preconnect: fetch.preconnect },
  );
  const webhook = new IncomingWebhook(url, { timeout: timeoutMs, fetch: fetchWithSignal });
  try {
    const res = await webhook.send(message);
    return { ok: true, message: `Slack accepted the message (${JSON.stringify(res.text ?? "ok")})` };
  } catch (err) {
    if (err instanceof IncomingWebhookHTTPError) {
      const body = err.body.trim().slice(0, 200);
      if (err.statusCode === 404 || body === "no_service") return { ok: false, reason: "not_found", status: err.statusCode, message: `Slack answered ${err.statusCode} ${body || "not found"}: the webhook was removed or the URL is wrong; make a new incoming webhook in Slack` };
      if (err.statusCode === 400) return { ok: false, reason: "invalid_payload", status: 400, message: `Slack answered 400 ${body}: it refused the message's form` };
      return { ok: false, reason: "http", status: err.statusCode, message: `Slack answered ${err.statusCode} ${body}` };
    }
    if (err instanceof IncomingWebhookRequestError) {
      const original = err.original as Error & { code?: string };
      if (original.name === "TimeoutError" || original.name === "AbortError") return { ok: false, reason: "timeout", message: `Slack did not answer within ${Math.round(timeoutMs / 1000)} s` };
      return { ok: false, reason: "network", message: `could not reach Slack: ${original.code ?? original.message}` };
    }
    return { ok: false, reason: "network", message: `could not send to Slack: ${(err as Error).message}` };
  }
}
