import type { Message } from "../core/message.ts";
import type { Connection } from "./connection.ts";

/** Most messages waiting for the end of the turn before they are delivered at once. */
const MAX_OUTBOX = 4096;

/**
 * The turn's accepted messages, waiting to be delivered together at the end of
 * the event-loop turn (after the log has written them). A flood that keeps the
 * loop from reaching the end of its turn is flushed every few thousand messages,
 * so memory stays bounded.
 */
export class Outbox {
  private messages: Message[] = [];
  private froms: (Connection | undefined)[] = [];
  private scheduled = false;

  /** `deliver` gets each batch in publish order, with the websocket connection each came from (if any). */
  constructor(private readonly deliver: (messages: Message[], froms: (Connection | undefined)[]) => void) {}

  /** Queues a message; it is delivered at the end of this turn (or now, when the outbox is full). */
  push(msg: Message, from: Connection | undefined): void {
    this.messages.push(msg);
    this.froms.push(from);
    if (this.messages.length >= MAX_OUTBOX) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Delivers what is waiting now. */
  readonly flush = (): void => {
    this.scheduled = false;
    const messages = this.messages;
    const froms = this.froms;
    if (messages.length === 0) return;
    this.messages = [];
    this.froms = [];
    this.deliver(messages, froms);
  };
}
