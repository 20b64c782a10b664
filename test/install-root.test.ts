/**
 * Root never runs code another user can write. The attack: the service user
 * (whose data folder holds the DuckDB library the service unpacks) swaps in
 * its own `duckdb.node` and rewrites the trust stamp beside it, then waits for
 * root to load it: install.sh's upgrade (which runs the binaries' `version`),
 * or an admin's `sudo switchyard query --data-dir /var/lib/switchyard`.
 * Here the planted library is a real shared object whose constructor leaves a
 * marker naming the uid it ran as.
 */
import { afterAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { distBinary } from "./binary-support.ts";
import { install, NATIVE, newRoot, removeRoots, serviceIds, sha, requireTool } from "./install-support.ts";
import { freeTcpPort } from "./support/server.ts";

setDefaultTimeout(120_000);
afterAll(removeRoots);

function run(cmd: string[], opts: { env?: Record<string, string>; stdin?: string } = {}) {
  const r = Bun.spawnSync(cmd, { env: { PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", HOME: "/root", ...opts.env }, stdin: opts.stdin === undefined ? "ignore" : Buffer.from(opts.stdin), stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

/**
 * Runs `cmd` as root in a mount namespace of its own with an empty /var/cache
 * (a tmpfs), so root's own /var/cache/switchyard is a fresh one and this
 * machine's is never touched; `setup` runs first in the same namespace.
 */
function asRootWithOwnVarCache(cmd: string[], setup = "", env: Record<string, string> = {}) {
  const script = `set -e; mount -t tmpfs -o mode=0755 tmpfs /var/cache; ${setup}\nexec "$@"`;
  return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", ...cmd], { env });
}

const bin = distBinary(NATIVE);
describe("root never loads a DuckDB library the service user planted", () => {
  if ("missing" in bin) {
    if (bin.fail) it("has a binary to install", () => { throw new Error(bin.missing); });
    else it.skip(`(skipped: ${bin.missing})`, () => {});
    return;
  }
  const needs = ["cc", "setpriv", "unshare"];
  const missing = needs.filter((t) => !Bun.which(t));

  it.skipIf(missing.length > 0 && !process.env.CI)(`planted duckdb.node + rewritten stamp: runs for the service user, never for root (install.sh upgrade, root's version and query)${missing.length ? ` (needs ${missing.join(", ")})` : ""}`, () => {
    for (const t of needs) requireTool(t);
    expect(process.geteuid?.()).toBe(0);
    const root = newRoot();
    const port = freeTcpPort();
    const first = install(["--root", root, "--binary", bin.path, "--port", String(port)], { root });
    expect(first).toMatchObject({ code: 0, err: "" });
    const { uid, gid } = serviceIds(root);
    expect(uid).not.toBe(0);
    const asService = ["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups"];
    const switchyard = join(root, "usr/local/bin/switchyard");
    const data = join(root, "var/lib/switchyard");
    // The service (as its user) unpacked the library into its cache when it started.
    const cache = join(data, "cache", "switchyard");
    const libDir = join(cache, readdirSync(cache).find((d) => d.startsWith("duckdb-"))!);
    expect(statSync(join(libDir, "duckdb.node")).uid).toBe(uid);

    // The planted code: a shared object whose constructor leaves loaded-by-uid-N.
    const markers = join(root, "markers");
    mkdirSync(markers);
    chmodSync(markers, 0o1777);
    const src = join(root, "planted.c");
    writeFileSync(src, `#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void planted(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/loaded-by-uid-%d", ${JSON.stringify(markers)}, (int)getuid());
  FILE *f = fopen(path, "w");
  if (f) { fputs("planted code ran\\n", f); fclose(f); }
}
`);
    const planted = join(root, "planted.so");
    expect(run(["cc", "-shared", "-fPIC", "-o", planted, src])).toMatchObject({ code: 0 });
    chmodSync(planted, 0o755);
    const loadedBy = () => readdirSync(markers).sort();

    // The attack, as the service user: swap the file in, then rewrite the stamp so it vouches for it.
    expect(run([...asService, "sh", "-c", 'cp "$1" "$2/.planted" && mv -f "$2/.planted" "$2/duckdb.node"', "sh", planted, libDir])).toMatchObject({ code: 0, err: "" });
    const stampPath = join(libDir, ".verified.json");
    const stamp = JSON.parse(readFileSync(stampPath, "utf8")) as Record<string, { size: number; mtimeMs: number; ino: number; sha256: string }>;
    const st = statSync(join(libDir, "duckdb.node"));
    stamp["duckdb.node"] = { ...stamp["duckdb.node"]!, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
    expect(run([...asService, "sh", "-c", 'cat >"$1.new" && mv -f "$1.new" "$1"', "sh", stampPath], { stdin: JSON.stringify(stamp) })).toMatchObject({ code: 0, err: "" });
    expect(statSync(stampPath).uid).toBe(uid);

    // The attack is real: anything trusting the stamp loads the planted code (here as the service user itself).
    const control = run([...asService, "env", `XDG_CACHE_HOME=${join(data, "cache")}`, switchyard, "version"], { env: { HOME: data } });
    expect(control.out).toContain("duckdb not available");
    expect(loadedBy()).toEqual([`loaded-by-uid-${uid}`]);

    // Root runs what the old install.sh ran (the library in the data folder's cache): it uses root's own copy instead.
    const version = asRootWithOwnVarCache([switchyard, "version"], "", { XDG_CACHE_HOME: join(data, "cache") });
    expect(loadedBy()).toEqual([`loaded-by-uid-${uid}`]);
    expect(version).toMatchObject({ code: 0, err: "" });
    expect(version.out).toMatch(/^switchyard \S+ \(commit \S+, linux-\w+, bun \S+, duckdb v[\d.]+\)\nduckdb library: embedded, unpacked in \/var\/cache\/switchyard\/duckdb-/);

    // sudo switchyard query --data-dir /var/lib/switchyard: answers, from root's own copy.
    const query = asRootWithOwnVarCache([switchyard, "query", "SELECT 42 AS n", "--format", "json", "--data-dir", data]);
    expect(loadedBy()).toEqual([`loaded-by-uid-${uid}`]);
    expect(query.code).toBe(0);
    expect(JSON.parse(query.out)).toEqual([{ n: 42 }]);
    expect(query.err).toMatch(/^\S+ INFO  duckdb native library unpacked dir="\/var\/cache\/switchyard\/duckdb-\S+" files=libduckdb\.so,duckdb\.node\n$/);

    // When root's own folder is not root's alone either, it refuses and says why and what to do.
    const refused = asRootWithOwnVarCache([switchyard, "query", "SELECT 42 AS n", "--data-dir", data], `mkdir /var/cache/switchyard; chown ${uid}:${gid} /var/cache/switchyard`);
    expect(refused.code).not.toBe(0);
    expect(refused.out + refused.err).toContain(`refusing to load DuckDB's native library as root from ${cache}: ${data} is owned by uid ${uid}, not root, so another user could put their own code there; root's own folder /var/cache/switchyard cannot be used either: /var/cache/switchyard is owned by uid ${uid}, not root. Run this command as the user that owns the data folder (e.g. sudo -u switchyard switchyard …), or set SWITCHYARD_NATIVE_DIR to a folder that only root can write`);

    // Root left the planted file alone (it never writes in the service's folder) and never ran it.
    expect(sha(join(libDir, "duckdb.node"))).toBe(sha(planted));
    expect(loadedBy()).toEqual([`loaded-by-uid-${uid}`]);

    // install.sh run again (an upgrade, as root): its version checks load root's own copy only.
    const upgrade = install(["--root", root, "--binary", bin.path], { root });
    expect(upgrade).toMatchObject({ code: 0, err: "" });
    expect(upgrade.out).toContain("upgrading switchyard");
    expect(loadedBy()).toEqual([`loaded-by-uid-${uid}`]);
    const rootCopy = join(root, "var/cache/switchyard", readdirSync(join(root, "var/cache/switchyard"))[0]!);
    for (const f of ["duckdb.node", "libduckdb.so"]) {
      expect(statSync(join(rootCopy, f)).uid).toBe(0);
      expect(statSync(join(rootCopy, f)).mode & 0o022).toBe(0);
    }
    // The restarted service checks the whole hash at start: it put the genuine library back before loading it.
    expect(readFileSync(join(root, "service.log"), "utf8")).toMatch(/duckdb native library unpacked dir=.*files=duckdb\.node/);
    expect(sha(join(libDir, "duckdb.node"))).toBe(sha(join(rootCopy, "duckdb.node")));
    expect(existsSync(join(markers, "loaded-by-uid-0"))).toBe(false);
  });
});

describe("install.sh's own folder for the library root loads", () => {
  it("refuses to run any binary when /var/cache/switchyard is not root's alone, and says what to do", () => {
    // A stand-in binary that would leave a marker if install.sh ran it.
    const d = newRoot();
    const marker = join(d, "ran");
    const fake = join(d, `switchyard-${NATIVE}`);
    writeFileSync(fake, `#!/bin/sh\ntouch ${marker}\necho "switchyard 9.9.9 (stand-in)"\n`);
    chmodSync(fake, 0o755);
    writeFileSync(join(d, "SHA256SUMS"), `${sha(fake)}  switchyard-${NATIVE}\n`);
    const root = newRoot();
    const cache = join(root, "var/cache/switchyard");
    mkdirSync(cache, { recursive: true });
    chownSync(cache, 65534, 65534);
    const r = install(["--root", root, "--binary", fake, "--no-start"], { root });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`install.sh: error: /var/cache/switchyard must be root's alone to hold the DuckDB library root loads here, but ${cache} is owned by uid 65534, not root. Make it (and every folder above it) owned by root and writable by root only, then run this again`);
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(join(root, "usr/local/bin/switchyard"))).toBe(false);
    // Group- or world-writable is refused too; root's own, it goes ahead.
    chownSync(cache, 0, 0);
    chmodSync(cache, 0o777);
    chmodSync(join(root, "var/cache"), 0o777);
    expect(install(["--root", root, "--binary", fake, "--no-start"], { root }).err).toContain(`${join(root, "var/cache")} is writable by every user`);
    chmodSync(join(root, "var/cache"), 0o755);
    const ok = install(["--root", root, "--binary", fake, "--no-start"], { root });
    expect(ok).toMatchObject({ code: 0, err: "" });
    expect(existsSync(marker)).toBe(true);
  });
});
