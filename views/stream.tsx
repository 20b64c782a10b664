import type { FC } from "hono/jsx";
import type { Message } from "../app/core/message.ts";
import type { StreamStats } from "../app/hub/stream-state.ts";
import { ago, bytes, count, rate } from "./format.ts";
import { FieldError, Layout, Notice } from "./layout.tsx";
import { Sparkline } from "./sparkline.tsx";

/** A stream's figures. */
export const StreamStatsCard: FC<{ stats: StreamStats | null; rates: readonly number[] }> = ({ stats, rates }) =>
  !stats ? (
    <div class="empty">This stream is not live: nobody is connected and nothing was sent lately. It appears when a client uses it.</div>
  ) : (
    <div>
      <div class="row" style="gap:1.5rem">
        <div><div class="figure" data-rate>{rate(stats.rate_1s)}</div><div class="small muted">messages/s</div></div>
        <div><div class="figure">{stats.subscribers}</div><div class="small muted">subscribers</div></div>
        <div><div class="figure">{stats.publishers}</div><div class="small muted">publishers</div></div>
        <div><Sparkline values={rates} width={240} height={40} /><div class="small muted">last 3 minutes</div></div>
      </div>
      <table class="small" style="margin-top:.5rem">
        <tbody>
          <tr><th>Sequence</th><td>{count(stats.seq)}</td><th>Rate (1 min)</th><td>{rate(stats.rate_1m)}/s</td></tr>
          <tr><th>In</th><td>{count(stats.messages_in)} · {bytes(stats.bytes_in)}</td><th>Out</th><td>{count(stats.messages_out)} · {bytes(stats.bytes_out)}</td></tr>
          <tr><th>Dropped</th><td>{count(stats.dropped)}</td><th>Slow disconnects</th><td>{count(stats.slow_disconnects)}</td></tr>
          <tr><th>Last message</th><td>{ago(stats.last_message_at)}</td><th>Listed since</th><td>{ago(stats.created_at)}</td></tr>
        </tbody>
      </table>
    </div>
  );

const PREVIEW = 300;

/** Messages for the live tail, newest first. */
export const TailRows: FC<{ messages: Message[]; skipped?: number }> = ({ messages, skipped }) => (
  <>
    {skipped ? <div class="muted">… {skipped} more message(s) in this instant, not shown</div> : null}
    {[...messages].reverse().map((m) => {
      const text = typeof m.data === "string" ? m.data : `binary ${m.data.byteLength} B: ${Buffer.from(m.data.subarray(0, 48)).toString("hex")}`;
      return (
        <div data-seq={m.seq}>
          <span class="muted">#{m.seq} {new Date(m.ts / 1000).toISOString().slice(11, 23)} {m.origin}</span>{" "}
          {text.length > PREVIEW ? text.slice(0, PREVIEW) + "…" : text}
        </div>
      );
    })}
  </>
);

/** The publish-a-test-message form (and its result). */
export const PublishForm: FC<{ stream: string; value?: string; errors?: Record<string, string>; result?: string }> = ({ stream, value, errors, result }) => (
  <form id="publish" class="stack" method="post" action="/admin/streams/publish" hx-post="/admin/streams/publish" hx-swap="outerHTML">
    {result && <Notice kind="ok" text={result} />}
    <input type="hidden" name="stream" value={stream} />
    <label>
      Message
      <textarea name="data" rows={3} aria-invalid={errors?.data ? "true" : undefined}>{value ?? '{"test": true}'}</textarea>
      <span class="help">sent as text to every subscriber of the stream, and logged</span>
      <FieldError errors={errors} name="data" />
    </label>
    <div><button type="submit">Publish</button></div>
  </form>
);

/** A stream: live stats, live tail (pausable), and a test publisher. */
export const StreamPage: FC<{ name: string; stats: StreamStats | null; rates: readonly number[]; recent: Message[] }> = ({ name, stats, rates, recent }) => (
  <Layout title={name} active="stream">
    <h1>Stream <code>{name}</code></h1>
    <div sse-connect={`/admin/events/stream?name=${encodeURIComponent(name)}`}>
      <section class="card">
        <h2>Figures</h2>
        <div id="stream-stats" sse-swap="stats"><StreamStatsCard stats={stats} rates={rates} /></div>
      </section>
      <section class="card">
        <div class="row" style="justify-content:space-between">
          <h2>Live tail</h2>
          <div class="row">
            <span id="tail-note" class="small muted"></span>
            <button type="button" class="secondary" data-pause-for="tail" aria-pressed="false">Pause</button>
          </div>
        </div>
        <div id="tail" class="tail" sse-swap="message" hx-swap="afterbegin" data-paused="false">
          {recent.length === 0 ? <div class="empty">Waiting for messages…</div> : <TailRows messages={recent} />}
        </div>
      </section>
    </div>
    <section class="card">
      <h2>Publish a test message</h2>
      <PublishForm stream={name} />
    </section>
  </Layout>
);
