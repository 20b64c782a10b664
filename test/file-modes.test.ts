import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { chmodSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { rawRequest, startServeProcess } from "./support/raw-http.ts";
import { tempDir, waitFor } from "./support/server.ts";

setDefaultTimeout(60_000);

/** Every file and folder under `dir` with its permission bits. */
function modesUnder(dir: string): [string, number][] {
  const out: [string, number][] = [];
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    out.push([p.slice(dir.length + 1), statSync(p).mode & 0o777]);
  }
  return out;
}

const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

describe("the data dir and what is written in it are private, whatever the umask", () => {
  it("a fresh data dir under umask 022: the dir 0700, spool segments, settings and the first password 0600", async () => {
    const tmp = tempDir();
    const dataDir = join(tmp.dir, "data");
    const srv = await startServeProcess(dataDir, { umask: "022" });
    try {
      const r = await rawRequest(srv.port, "POST /api/streams/s/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
      expect(r.status).toBe(200);
      expect(mode(dataDir)).toBe("700");
      expect(mode(join(dataDir, "spool"))).toBe("700");
      const segments = readdirSync(join(dataDir, "spool"));
      expect(segments.length).toBeGreaterThan(0);
      for (const f of segments) expect(`${f} ${mode(join(dataDir, "spool", f))}`).toBe(`${f} 600`);
      for (const f of ["switchyard.db", "switchyard.db-wal", "initial-admin-password"]) expect(`${f} ${mode(join(dataDir, f))}`).toBe(`${f} 600`);
      // Nothing under it is open to other users; but DuckDB's library, which the compiled binary
      // unpacks under cache/ with its own modes: public code, not data, and inside the 0700 dir.
      for (const [p, m] of modesUnder(dataDir)) if (!p.startsWith("cache/")) expect(`${p} ${(m & 0o077).toString(8)}`).toBe(`${p} 0`);
    } finally {
      await srv.stop();
      tmp.remove();
    }
  });

  it("an existing 0755 data dir is tightened to 0700, with a warning", async () => {
    const tmp = tempDir();
    const dataDir = join(tmp.dir, "data");
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    const srv = await startServeProcess(dataDir, { umask: "022" });
    try {
      await waitFor(() => srv.log().includes("tightened to 0700"), "the warning");
      expect(srv.log()).toContain("was=0755");
      expect(mode(dataDir)).toBe("700");
    } finally {
      await srv.stop();
      tmp.remove();
    }
  });
});
