import type { FC } from "hono/jsx";
import type { ClusterPanel } from "../app/cluster/status.ts";
import { ago, count, rate, streamHref } from "./format.ts";

export type ClusterPanelData = ReturnType<ClusterPanel["current"]>;

/** Streams shown per node (busiest first); the rest are counted. */
const STREAMS_SHOWN = 8;

/** The cluster card: this node's NATS link, and every node seen with its streams and rates. */
export const ClusterCard: FC<{ cluster: ClusterPanelData }> = ({ cluster: { link, view } }) => (
  <div id="cluster-state">
    <p>
      Node <strong>{link.node}</strong>{" "}
      {link.connected
        ? <><span class="badge ok">connected</span> to <code>{link.server}</code></>
        : <><span class="badge bad">disconnected</span> since {ago(link.down_since)}{link.last_error && <span class="small muted"> ({link.last_error})</span>}; reconnecting</>}
    </p>
    <p class="small muted">
      Published {count(link.published)} · received {count(link.received)} · subjects {link.subjects}
      {link.bufferDropped > 0 && <> · <span class="badge bad">{count(link.bufferDropped)} dropped while cut off</span></>}
      {Object.values(link.dropped).some((n) => n > 0) && <> · refused from NATS: {Object.entries(link.dropped).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`).join(", ")}</>}
    </p>
    {view === null ? <div class="empty">Asking the other nodes…</div> : (
      <div class="scroll">
        <table>
          <thead><tr><th>Node</th><th>Version</th><th class="num">Connections</th><th class="num">Messages/s</th><th>Streams</th></tr></thead>
          <tbody>
            {view.nodes.map((n) => {
              const busiest = [...n.streams].sort((a, b) => b.rate_1s - a.rate_1s);
              return (
                <tr data-node={n.node}>
                  <td>{n.node}{n.node === view.node && <span class="small muted"> (this node)</span>}</td>
                  <td class="small">{n.version}</td>
                  <td class="num">{n.connections}</td>
                  <td class="num">{rate(n.streams.reduce((sum, s) => sum + s.rate_1s, 0))}</td>
                  <td class="small">
                    {busiest.slice(0, STREAMS_SHOWN).map((s, i) => <>{i > 0 && ", "}<a href={streamHref(s.stream)}>{s.stream}</a> {rate(s.rate_1s)}/s</>)}
                    {busiest.length > STREAMS_SHOWN && <span class="muted"> and {busiest.length - STREAMS_SHOWN} more</span>}
                    {busiest.length === 0 && <span class="muted">none</span>}
                  </td>
                </tr>
              );
            })}
            {view.missing.map((m) => <tr data-node={m}><td>{m}</td><td colspan={4}><span class="badge warn">did not answer</span> within {view.wait_ms} ms</td></tr>)}
          </tbody>
        </table>
      </div>
    )}
  </div>
);
