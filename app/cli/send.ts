import { UsageError } from "../core/errors.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import { parseCommandArgs, type Command } from "./command.ts";

const FORMATS = ["json", "line", "raw"] as const;

/** Parses `host:port`, `:port`, `port` or `[v6]:port`; the default is 127.0.0.1:8889. */
function parseTarget(text: string | undefined): { host: string; port: number } {
  if (text === undefined || text === "") return { host: "127.0.0.1", port: 8889 };
  const m = /^\d+$/.test(text) ? [text, undefined, undefined, text] : /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d+)$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || !(port >= 1 && port <= 65535)) throw new UsageError(`send: --udp: ${JSON.stringify(text)} is not an address; allowed: HOST:PORT, [IPv6]:PORT, :PORT or PORT (default 127.0.0.1:8889)`);
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

/**
 * Turns one input line into the datagram to send: with `--stream`, a JSON object
 * gets its stream field set (format json) or the line is prefixed `stream<TAB>`
 * (format line); format raw sends the line as it is.
 */
export function datagramFor(line: string, format: (typeof FORMATS)[number], stream: string | undefined, field: string): string {
  if (!stream || format === "raw") return line;
  if (format === "line") return `${stream}\t${line}`;
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch {
    obj = undefined;
  }
  if (typeof obj === "object" && obj !== null && !Array.isArray(obj)) return JSON.stringify({ ...obj, [field]: stream });
  return JSON.stringify({ [field]: stream, data: line });
}

/** `switchyard send --udp`: each line of standard input becomes one UDP datagram. */
export const send: Command = {
  name: "send",
  summary: "send lines from standard input as UDP datagrams (for testing a box)",
  usage: `Usage: switchyard send --udp [HOST:PORT] [--stream NAME] [--format json|line|raw] [--field stream]

Reads lines from standard input and sends each as one datagram, by default to
127.0.0.1:8889. Prints how many were sent to standard error.

  echo '{"stream":"spin30","v":1}' | switchyard send --udp

Options:
  --udp [HOST:PORT]  where to send (default 127.0.0.1:8889)
  --stream NAME      put NAME in each datagram: sets the JSON field (format json; a line
                     that is not a JSON object is sent as {"stream":NAME,"data":line}),
                     or sends NAME<TAB>line (format line)
  --format F         json (default), line, raw (each line as is)
  --field NAME       the JSON field that names the stream (default stream)`,
  async run(argv, io) {
    const { values, positionals } = parseCommandArgs("send", argv, {
      udp: { type: "boolean" }, stream: { type: "string" }, format: { type: "string" }, field: { type: "string" },
    }, true);
    if (values.help) return io.out(this.usage + "\n"), 0;
    if (!values.udp) throw new UsageError("send: say how to send: --udp [HOST:PORT] (the only transport so far)");
    if (positionals.length > 1) throw new UsageError(`send: unexpected arguments ${JSON.stringify(positionals.slice(1))}; allowed: one HOST:PORT after --udp`);
    const target = parseTarget(positionals[0]);
    const format = (values.format ?? "json") as (typeof FORMATS)[number];
    if (!FORMATS.includes(format)) throw new UsageError(`send: --format: ${JSON.stringify(values.format)} is not valid; allowed: ${FORMATS.join(", ")}`);
    if (values.stream !== undefined) {
      const p = streamNameProblem(values.stream);
      if (p) throw new UsageError(`send: --stream: ${p}`);
    }
    const field = values.field ?? "stream";
    const socket = await Bun.udpSocket({ connect: { hostname: target.host, port: target.port } });
    let sent = 0;
    let failed = 0;
    let lastError = "";
    let pending = "";
    const flushLine = (line: string) => {
      if (line.trim() === "") return;
      try {
        if (socket.send(datagramFor(line.replace(/\r$/, ""), format, values.stream, field))) sent++;
        else failed++;
      } catch (err) {
        // A connected UDP socket hears of an ICMP "port unreachable" on a later send.
        failed++;
        const code = (err as { code?: string }).code;
        lastError = code === "ECONNREFUSED" ? `nothing is listening on ${target.host}:${target.port} (ECONNREFUSED)` : (err as Error).message;
      }
    };
    const decoder = new TextDecoder();
    for await (const chunk of Bun.stdin.stream()) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) flushLine(line);
    }
    flushLine(pending + decoder.decode());
    socket.close();
    io.err(`sent ${sent} datagram${sent === 1 ? "" : "s"} to ${target.host}:${target.port}${failed ? `, ${failed} could not be sent${lastError ? `: ${lastError}` : ""}` : ""}\n`);
    return failed > 0 ? 1 : 0;
  },
};
