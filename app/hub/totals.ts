/** Hub-wide counters for /metrics; they only go up for the process's lifetime. */
export interface HubTotals {
  connectionsOpened: number;
  connectionsRefused: Record<string, number>;
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
  slowDisconnects: number;
  sinkErrors: number;
  /** Messages slow subscribers lost, counted when they caught up or left (never goes down). */
  droppedSettled: number;
  /** Messages refused (not stored, not delivered) because the log could not write them. */
  refusedUnlogged: number;
  /** Messages delivered although the log could not write them (setting log_deliver_unlogged). */
  deliveredUnlogged: number;
}

/** Totals at process start: all zero. */
export function emptyTotals(): HubTotals {
  return { connectionsOpened: 0, connectionsRefused: {}, messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0, slowDisconnects: 0, sinkErrors: 0, droppedSettled: 0, refusedUnlogged: 0, deliveredUnlogged: 0 };
}
