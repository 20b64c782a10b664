import { hostname } from "node:os";
import { sendToSlack, type SlackMessage, type SlackResult } from "./slack.ts";

/** What an alert says: a headline, lines of detail, and where to look. */
export interface AlertText {
  headline: string;
  details: string[];
  host: string;
  link?: string;
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A Slack message with blocks, and the same in plain text as the fallback. */
export function alertMessage(a: AlertText): SlackMessage {
  const plain = [a.headline, ...a.details, `on ${a.host}`, ...(a.link ? [a.link] : [])].join("\n");
  const context = [`*${escape(a.host)}*`, ...(a.link ? [`<${a.link}|open>`] : [])].join(" · ");
  return {
    text: plain,
    blocks: [
      { type: "section", text: { type: "mrkdwn", text: `*${escape(a.headline)}*${a.details.length ? "\n" + a.details.map(escape).join("\n") : ""}` } },
      { type: "context", elements: [{ type: "mrkdwn", text: context }] },
    ] as SlackMessage["blocks"],
  };
}


/** "95 s", "4 min 10 s", "2 h 5 min". */
export function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The text of a test message, unless the sender gives one. */
export const TEST_MESSAGE = "Test message from Switchyard: Slack alerts work.";

/** Sends a test message to `url` now (the CLI's `slack test`, POST /api/slack/test and the Slack page's button). */
export async function sendTestMessage(url: string, text = TEST_MESSAGE, timeoutMs?: number): Promise<SlackResult> {
  return sendToSlack(url, alertMessage({ headline: text, details: [], host: hostname() }), timeoutMs);
}
