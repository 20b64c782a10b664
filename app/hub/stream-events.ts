/** A stream appeared or disappeared. */
export interface StreamEvent {
  event: "stream_added" | "stream_removed";
  stream: string;
  ts: string;
}

/** The system stream that carries StreamEvents to websocket clients. */
export const STREAMS_EVENTS_STREAM = "$streams";
