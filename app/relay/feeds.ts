import type { Database } from "bun:sqlite";
import { InvalidInput } from "../core/errors.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import type { Hub } from "../hub/hub.ts";

/** A practable stream rule: clients of `stream` also receive every stream in `feeds`. */
export interface FeedRule {
  stream: string;
  feeds: string[];
}

/** Validates `{"stream":"stream/x","feeds":["video0","audio0"]}`; throws InvalidInput saying what is wrong. */
export function parseFeedRule(body: unknown): FeedRule {
  const b = body as { stream?: unknown; feeds?: unknown } | null;
  if (typeof b !== "object" || b === null) throw new InvalidInput('the body must be a JSON object like {"stream":"stream/x","feeds":["video0","audio0"]}');
  const stream = typeof b.stream === "string" ? b.stream.replace(/^\/+/, "") : "";
  const problem = streamNameProblem(stream);
  if (problem) throw new InvalidInput(`stream: ${problem}`, { stream: problem });
  if (!Array.isArray(b.feeds) || b.feeds.some((f) => typeof f !== "string")) throw new InvalidInput("feeds: allowed: a list of stream names", { feeds: "must be a list of stream names" });
  const feeds = (b.feeds as string[]).map((f) => f.replace(/^\/+/, ""));
  for (const f of feeds) {
    const p = streamNameProblem(f);
    if (p) throw new InvalidInput(`feeds: ${p}`, { feeds: p });
  }
  return { stream, feeds };
}

/** Feed rules kept in the settings store and applied to the hub, at start and on every change. */
export class FeedRules {
  constructor(private readonly db: Database, private readonly hub: Hub) {}

  load(): void {
    for (const r of this.all()) this.hub.setFeeds(r.stream, r.feeds);
  }

  all(): FeedRule[] {
    return this.db.query<{ stream: string; feeds: string }, []>("SELECT stream, feeds FROM feeds ORDER BY stream").all()
      .map((r) => ({ stream: r.stream, feeds: JSON.parse(r.feeds) as string[] }));
  }

  get(stream: string): FeedRule | null {
    const r = this.db.query<{ feeds: string }, [string]>("SELECT feeds FROM feeds WHERE stream = ?").get(stream);
    return r ? { stream, feeds: JSON.parse(r.feeds) as string[] } : null;
  }

  set(rule: FeedRule): void {
    this.db.run("INSERT INTO feeds (stream, feeds) VALUES (?, ?) ON CONFLICT(stream) DO UPDATE SET feeds = excluded.feeds", [rule.stream, JSON.stringify(rule.feeds)]);
    this.hub.setFeeds(rule.stream, rule.feeds);
  }

  remove(stream: string): void {
    this.db.run("DELETE FROM feeds WHERE stream = ?", [stream]);
    this.hub.setFeeds(stream, []);
  }

  removeAll(): void {
    for (const r of this.all()) this.remove(r.stream);
  }
}
