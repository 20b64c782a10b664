import type { Hono } from "hono";
import { notFound } from "../../core/errors.ts";
import type { Message } from "../../core/message.ts";
import { PublishError } from "../../hub/hub.ts";
import { notStoredMessage, publishCommitted } from "../../sources/http/publish.ts";
import { streamStats } from "../../hub/stream-state.ts";
import { streamNameProblem } from "../../core/stream-name.ts";
import { destinationView } from "../../relay/destinations.ts";
import { dashboardParts, DashboardPage, type DashboardData } from "../../../views/dashboard.tsx";
import { PublishForm, StreamPage, StreamStatsCard, TailRows } from "../../../views/stream.tsx";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import type { LogUsage } from "../../log/usage.ts";
import { formFields, html, livePage } from "./support.ts";
import { bodyLimitFor } from "../body.ts";
import { ClusterPanel, nodeStatus } from "../../cluster/status.ts";
import { VERSION } from "../../version.ts";

/** Most messages a live tail sends per batch (4 batches a second); the rest are counted. */
const TAIL_BATCH = 25;

function dashboardData(deps: HttpDeps, cluster: ClusterPanel | null): DashboardData {
  const alerts = deps.alerts.snapshot();
  return {
    streams: deps.hub.listStreams().map((s) => ({ ...streamStats(s), rates: deps.rates.of(s.name) })).sort((a, b) => a.stream.localeCompare(b.stream)),
    udp: deps.udp.snapshot(),
    destinations: deps.destinations.list().map(destinationView),
    usage: { ...deps.logUsage(), offload: offloadUsage(deps) },
    alerts: alerts.alerts,
    firing: alerts.firing.length,
    port: String(deps.config.port || 8888),
    tls: deps.tls?.() ?? null,
    cluster: cluster?.current() ?? null,
  };
}

async function renderParts(parts: Record<string, unknown>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [k, el] of Object.entries(parts)) out[k] = await html(el);
  return out;
}

/** Binds the dashboard and stream pages with their event streams, and the test publisher. */
export function bindLiveRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const cluster = deps.cluster ? new ClusterPanel(deps.cluster, () => nodeStatus(deps.hub, deps.config.nodeId, VERSION)) : null;
  app.get("/admin", (c) => c.html(<DashboardPage data={dashboardData(deps, cluster)} />));
  app.get("/admin/events/dashboard", (c) => livePage(c, () => renderParts(dashboardParts(dashboardData(deps, cluster)))));

  const streamName = (raw: string | undefined) => {
    const name = raw ?? "";
    const problem = streamNameProblem(name);
    if (problem) throw notFound(`no stream page for ${JSON.stringify(name)}: ${problem}`);
    return name;
  };

  app.get("/admin/streams/*", (c) => {
    const raw = new URL(c.req.url).pathname.slice("/admin/streams/".length);
    let decoded: string;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      throw notFound(`no stream page for ${JSON.stringify(raw)}: not valid percent-encoding`);
    }
    const name = streamName(decoded);
    const s = deps.hub.stream(name);
    return c.html(<StreamPage name={name} stats={s ? streamStats(s) : null} rates={deps.rates.of(name)} recent={deps.recent.query(name, { limit: 50 }) ?? []} />);
  });

  app.get("/admin/events/stream", (c) => {
    const name = streamName(c.req.query("name"));
    const statsPart = async () => {
      const s = deps.hub.stream(name);
      return { stats: await html(<StreamStatsCard stats={s ? streamStats(s) : null} rates={deps.rates.of(name)} />) };
    };
    return livePage(c, statsPart, 1000, (send) => {
      // The tail: messages as delivered, sent in batches four times a second (a busy stream is sampled, not queued).
      let batch: Message[] = [];
      let skipped = 0;
      const off = deps.taps.add(name, (m) => {
        if (batch.length < TAIL_BATCH) batch.push(m);
        else skipped++;
      });
      const timer = setInterval(async () => {
        if (batch.length === 0) return;
        const rows = batch;
        const more = skipped;
        batch = [];
        skipped = 0;
        await send("message", await html(<TailRows messages={rows} skipped={more} />));
      }, 250);
      return () => {
        off();
        clearInterval(timer);
      };
    });
  });

  app.post("/admin/streams/publish", async (c) => {
    const form = await formFields(c, bodyLimitFor("POST", "/admin/streams/publish", deps.store.settings.max_message_bytes)!);
    const name = streamName(form.stream);
    const data = form.data ?? "";
    const fail = (msg: string) => c.html(<PublishForm stream={name} value={data} errors={{ data: msg }} />, 422);
    if (data === "") return fail("allowed: any text; the message must not be empty");
    try {
      // Waits through a commit registered before the append, as the HTTP publish does: a big
      // message is written within publish(), and a failed write must not pass for a durable one.
      const { value: m, committed } = publishCommitted(deps, 1, () => deps.hub.publish(name, data, "admin-ui"));
      try {
        await committed;
      } catch (err) {
        return fail(notStoredMessage(m.seq, m.stream, err as Error, deps.store.settings.log_deliver_unlogged));
      }
      return c.html(<PublishForm stream={name} value={data} result={`published as message #${m.seq} (${Buffer.byteLength(data)} B)`} />);
    } catch (err) {
      if (err instanceof PublishError) return fail(err.message);
      throw err;
    }
  });
}

/** The offload's part of the log's usage (null: offloading is off). */
function offloadUsage(deps: HttpDeps): LogUsage["offload"] {
  const o = deps.offloader?.status();
  return o?.enabled ? { pending_files: o.pending_files, pending_bytes: o.pending_bytes, verified_files: o.verified_files, verified_bytes: o.verified_bytes, failing_since: o.failing_since, last_error: o.last_error } : null;
}
