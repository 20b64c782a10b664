import type { Hub } from "../hub/hub.ts";
import { STREAM_SUBJECT_PREFIX, streamSubject } from "./subjects.ts";

/** What a node has local interest in: streams by name, and alert patterns (globs) watched for silence. */
export interface InterestSources {
  hub: Hub;
  /** Streams read by subscribers outside the hub's topics (resuming followers, SSE, the UI's live tails). */
  followed: () => Iterable<string>;
  /** Streams that destinations relay out. */
  destinations: () => Iterable<string>;
  /** Glob patterns of the alert rules that watch streams (alert_silent_streams). */
  watched: () => readonly string[];
}

/**
 * The NATS subjects a node subscribes to: one per stream with local interest
 * (a websocket subscriber, including a resuming one; a follower, SSE or a live
 * tail; a destination; a stream fed to a subscribed stream by a feed rule), and
 * one per alert pattern. A pattern with `*` becomes the literal segments before
 * its first `*` plus `>`, which NATS matches on whole tokens (`lab/rig*`
 * → `switchyard.s.lab.>`); over-matching is harmless because the same message
 * reaching two subscriptions is delivered once (ClusterLink drops duplicates).
 */
export function interestSubjects(src: InterestSources): Set<string> {
  const subjects = new Set<string>();
  for (const s of src.hub.listStreams()) {
    if (s.subscribers === 0) continue;
    subjects.add(streamSubject(s.name));
    for (const fed of src.hub.feedsOf(s.name)) subjects.add(streamSubject(fed));
  }
  for (const name of src.followed()) subjects.add(streamSubject(name));
  for (const name of src.destinations()) subjects.add(streamSubject(name));
  for (const pattern of src.watched()) subjects.add(patternSubject(pattern));
  return subjects;
}

/** The subject that covers every stream an alert pattern can match. */
export function patternSubject(pattern: string): string {
  const star = pattern.indexOf("*");
  if (star < 0) return streamSubject(pattern);
  const literal = pattern.slice(0, star).split("/").slice(0, -1);
  return literal.length === 0 ? `${STREAM_SUBJECT_PREFIX}>` : `${streamSubject(literal.join("/"))}.>`;
}
