import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { startTestServer, tempDir, waitFor, type TestServer } from "../support/server.ts";

// ffmpeg, ffprobe and two real servers on a shared machine.
setDefaultTimeout(120_000);

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => {});
});

async function run(cmd: string[]) {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd[0]} exited ${code}: ${stderr.slice(-2000)}`);
  return stdout;
}

describe("compat: a destination's record file, as practable writes it", () => {
  it("records an MPEG-TS stream sent to /ts/{stream} as a .ts file that ffprobe reads whole", async () => {
    const tmp = tempDir();
    try {
      // Two seconds of test video at 10 frames a second: 20 frames.
      const source = join(tmp.dir, "source.ts");
      await run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=10", "-c:v", "mpeg2video", "-f", "mpegts", source]);
      const relay = await startTestServer();
      servers.push(relay);
      const host = await startTestServer();
      servers.push(host);
      // The rule as an operator posts it: practable's fields only, so the record format is practable's (raw).
      const posted = await fetch(`${host.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "cam", stream: "video0", destination: relay.wsUrl("video0-copy"), token: "", file: "video0.ts" }) });
      expect(posted.status).toBe(200);
      expect((await posted.json()).record_format).toBe("raw");
      await waitFor(() => host.destinations.get("cam")?.status.state === "connected", "the destination to connect");
      // As a camera would: a long POST body of MPEG-TS.
      await run(["curl", "-sS", "--fail", "-X", "POST", "-H", "Content-Type: video/mp2t", "--data-binary", `@${source}`, `${host.url}/ts/video0`]);
      const recorded = join(host.dataDir, "records", "video0.ts");
      const size = statSync(source).size;
      await waitFor(() => existsSync(recorded) && statSync(recorded).size >= size, "the whole stream in the record file", 20_000);
      expect(readFileSync(recorded).equals(readFileSync(source))).toBe(true);
      const probe = JSON.parse(await run(["ffprobe", "-v", "error", "-count_frames", "-show_entries", "format=format_name,duration:stream=codec_name,nb_read_frames", "-of", "json", recorded])) as {
        format: { format_name: string; duration: string };
        streams: { codec_name: string; nb_read_frames: string }[];
      };
      expect(probe.format.format_name).toBe("mpegts");
      expect(Math.abs(Number(probe.format.duration) - 2)).toBeLessThan(0.2);
      expect(probe.streams).toHaveLength(1);
      expect(probe.streams[0]).toMatchObject({ codec_name: "mpeg2video", nb_read_frames: "20" });
      // ffmpeg decodes every frame of it without an error.
      await run(["ffmpeg", "-hide_banner", "-v", "error", "-xerror", "-i", recorded, "-f", "null", "-"]);
    } finally {
      tmp.remove();
    }
  });
});
