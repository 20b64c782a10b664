import type { Hub } from "../hub/hub.ts";
import { CLOSE } from "../sources/websocket.ts";

/** The latest expiry a list keeps, 9999-12-31T23:59:59Z (seconds since the epoch): later ones are cut to it. */
export const MAX_EXP = 253_402_300_799;

/** An expiry (seconds since the epoch) as an ISO time; never throws, however far off it is. */
export function expiryIso(exp: number): string {
  return new Date(Math.min(Math.max(exp, 0), MAX_EXP) * 1000).toISOString();
}

/** A booking id on a list until `exp` (seconds since the epoch). */
export interface BookingEntry {
  booking_id: string;
  exp: number;
}

/** A relay session as the booking views show it. */
export interface BookedConnection {
  stream: string;
  origin: string;
  booking_id: string | null;
  read: boolean;
  write: boolean;
  expires: string | null;
}

/**
 * practable's booking control: a booking system can deny a booking id until a
 * time (its relay sessions are closed at once, its unused access codes dropped,
 * new access requests refused with 400) and allow it again. Like practable's
 * relay it also lists the booking ids it has seen in access requests (the allow
 * list). Both lists live in memory and forget entries past their `exp`.
 */
export class BookingControl {
  private readonly denied = new Map<string, number>();
  private readonly allowed = new Map<string, number>();
  private readonly onDenyListeners: ((bookingId: string) => void)[] = [];
  /** Long-lived HTTP answers (server-sent events) opened with a booking's token, by booking id. */
  private readonly held = new Map<string, Set<() => void>>();

  constructor(private readonly hub: Hub, private readonly now: () => number = () => Date.now() / 1000) {}

  /** Calls `fn` with each booking id that is denied (the session server drops its codes). */
  onDeny(fn: (bookingId: string) => void): void {
    this.onDenyListeners.push(fn);
  }

  /**
   * Registers a long-lived HTTP answer (server-sent events) opened with a token
   * of `bookingId`: a deny of that booking calls `end`, as it closes the
   * booking's websockets. Returns the function that forgets it (call it when the
   * answer ends by itself).
   */
  hold(bookingId: string, end: () => void): () => void {
    let set = this.held.get(bookingId);
    if (!set) this.held.set(bookingId, (set = new Set()));
    set.add(end);
    return () => {
      set.delete(end);
      if (set.size === 0 && this.held.get(bookingId) === set) this.held.delete(bookingId);
    };
  }

  /** Denies `bookingId` until `exp`; closes its open sessions and event streams. Answers how many were closed. */
  deny(bookingId: string, exp: number): number {
    this.allowed.delete(bookingId);
    this.denied.set(bookingId, Math.min(exp, MAX_EXP));
    for (const fn of this.onDenyListeners) fn(bookingId);
    let closed = 0;
    for (const s of this.hub.listStreams()) {
      for (const c of s.connections) {
        if (c.bookingId !== bookingId || c.closing || !c.ws) continue;
        c.closing = true;
        c.ws.close(CLOSE.policy, `booking ${bookingId} was cancelled (denied until ${expiryIso(exp)})`);
        closed++;
      }
    }
    const held = this.held.get(bookingId);
    this.held.delete(bookingId);
    for (const end of held ?? []) {
      try {
        end();
      } catch {
        // one stream failing to end must not keep the others open
      }
      closed++;
    }
    return closed;
  }

  /** Takes `bookingId` off the deny list and notes it as allowed until `exp`. */
  allow(bookingId: string, exp: number): void {
    this.denied.delete(bookingId);
    this.allowed.set(bookingId, Math.min(exp, MAX_EXP));
  }

  isDenied(bookingId: string): boolean {
    const exp = this.denied.get(bookingId);
    if (exp === undefined) return false;
    if (exp > this.now()) return true;
    this.denied.delete(bookingId);
    return false;
  }

  deniedList(): BookingEntry[] {
    return this.list(this.denied);
  }

  allowedList(): BookingEntry[] {
    return this.list(this.allowed);
  }

  /** Open relay sessions and websocket connections, with their booking ids. */
  connections(): BookedConnection[] {
    const out: BookedConnection[] = [];
    for (const s of this.hub.listStreams()) {
      for (const c of s.connections) {
        if (c.closing) continue;
        out.push({ stream: c.stream, origin: c.origin, booking_id: c.bookingId ?? null, read: c.grant.read, write: c.grant.write, expires: c.grant.exp ? expiryIso(c.grant.exp) : null });
      }
    }
    return out.sort((a, b) => (a.booking_id ?? "").localeCompare(b.booking_id ?? "") || a.stream.localeCompare(b.stream));
  }

  private list(m: Map<string, number>): BookingEntry[] {
    const now = this.now();
    for (const [bid, exp] of m) if (exp <= now) m.delete(bid);
    return [...m].map(([booking_id, exp]) => ({ booking_id, exp })).sort((a, b) => a.booking_id.localeCompare(b.booking_id));
  }
}
