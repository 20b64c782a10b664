import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EmbeddedNative } from "../native/embedded.ts";
import { rootNativeBase, whyNotRootOnly } from "../native/root-only.ts";
import { ensureNativeFiles, nativeCacheBase, nativeDirFor, sha256File } from "../native/unpack.ts";
import { tempDir } from "./support/server.ts";

setDefaultTimeout(60_000);

const dirs: { remove(): void }[] = [];
afterEach(() => dirs.splice(0).forEach((d) => d.remove()));

/** Fake "embedded" files (plain files standing in for the binary's $bunfs ones). */
function fakeEmbedded(sizes = [300_000, 2_000]): { e: EmbeddedNative; base: string; src: string } {
  const t = tempDir("switchyard-unpack-");
  dirs.push(t);
  const names = ["libduckdb.so", "duckdb.node"];
  const files = sizes.map((size, i) => {
    const path = join(t.dir, `src-${names[i]}`);
    const data = randomBytes(size);
    writeFileSync(path, data);
    return { name: names[i]!, path, size, sha256: createHash("sha256").update(data).digest("hex") };
  });
  return { e: { package: "@duckdb/node-bindings-linux-x64", version: "1.5.5-r.5", platform: "linux-x64", files }, base: join(t.dir, "cache"), src: t.dir };
}

const inode = (p: string) => statSync(p).ino;

describe("unpacking the embedded DuckDB library", () => {
  it("unpacks once into a versioned folder, then reuses it (hash check, then stamp check)", () => {
    const { e, base } = fakeEmbedded();
    const first = ensureNativeFiles(e, base, "hash");
    expect(first.unpacked).toEqual(["libduckdb.so", "duckdb.node"]);
    expect(first.dir).toBe(nativeDirFor(e, base));
    expect(first.dir).toMatch(/duckdb-1\.5\.5-r\.5-linux-x64-[0-9a-f]{12}$/);
    for (const f of e.files) expect(sha256File(join(first.dir, f.name))).toBe(f.sha256);
    const ino = inode(join(first.dir, "libduckdb.so"));

    const second = ensureNativeFiles(e, base, "hash");
    expect(second).toMatchObject({ dir: first.dir, unpacked: [], checked: "hash" });
    const third = ensureNativeFiles(e, base, "stamp");
    expect(third).toMatchObject({ unpacked: [], checked: "stamp" });
    expect(inode(join(first.dir, "libduckdb.so"))).toBe(ino);
    expect(readdirSync(first.dir).sort()).toEqual([".verified.json", "duckdb.node", "libduckdb.so"]);
  });

  it("unpacks again a file that is damaged (same size), cut short, or missing", () => {
    const { e, base } = fakeEmbedded();
    const { dir } = ensureNativeFiles(e, base, "hash");
    const lib = join(dir, "libduckdb.so");
    const bytes = readFileSync(lib);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(lib, bytes);
    expect(ensureNativeFiles(e, base, "hash").unpacked).toEqual(["libduckdb.so"]);
    expect(sha256File(lib)).toBe(e.files[0]!.sha256);

    // A damaged file is found by the stamp check too: its mtime or inode moved.
    writeFileSync(lib, bytes);
    utimesSync(lib, new Date(), new Date(Date.now() + 5000));
    expect(ensureNativeFiles(e, base, "stamp").unpacked).toEqual(["libduckdb.so"]);

    writeFileSync(join(dir, "duckdb.node"), "short");
    expect(ensureNativeFiles(e, base, "stamp").unpacked).toEqual(["duckdb.node"]);
    expect(sha256File(join(dir, "duckdb.node"))).toBe(e.files[1]!.sha256);
  });

  it("a different build's files go to a different folder", () => {
    const a = fakeEmbedded();
    const b = fakeEmbedded();
    expect(nativeDirFor(a.e, "/x")).not.toBe(nativeDirFor(b.e, "/x"));
  });

  it("refuses a damaged embedded file, and says why a folder cannot be used", () => {
    const { e, base, src } = fakeEmbedded();
    writeFileSync(e.files[0]!.path, randomBytes(e.files[0]!.size));
    expect(() => ensureNativeFiles(e, base, "hash")).toThrow(/embedded libduckdb\.so is damaged.*download the binary again/);
    const file = join(src, "a-file");
    writeFileSync(file, "");
    expect(() => ensureNativeFiles(e, join(file, "below"), "hash")).toThrow(/cannot create .* set SWITCHYARD_NATIVE_DIR/);
  });

  it("picks SWITCHYARD_NATIVE_DIR, then $XDG_CACHE_HOME/switchyard, then ~/.cache/switchyard", () => {
    expect(nativeCacheBase({ SWITCHYARD_NATIVE_DIR: "/n", XDG_CACHE_HOME: "/x", HOME: "/h" })).toBe("/n");
    expect(nativeCacheBase({ XDG_CACHE_HOME: "/x", HOME: "/h" })).toBe("/x/switchyard");
    expect(nativeCacheBase({ XDG_CACHE_HOME: "relative", HOME: "/h" })).toBe("/h/.cache/switchyard");
    expect(nativeCacheBase({ HOME: "/h" })).toBe("/h/.cache/switchyard");
  });

  it("processes unpacking at the same time all end with whole, correct files", async () => {
    const { e, base, src } = fakeEmbedded([24 * 1024 * 1024, 500_000]);
    const spec = join(src, "embedded.json");
    writeFileSync(spec, JSON.stringify(e));
    const script = `import { ensureNativeFiles } from ${JSON.stringify(join(import.meta.dir, "..", "native", "unpack.ts"))};
      const e = JSON.parse(await Bun.file(${JSON.stringify(spec)}).text());
      const r = ensureNativeFiles(e, ${JSON.stringify(base)}, "hash");
      console.log(JSON.stringify(r));`;
    const procs = Array.from({ length: 6 }, () => Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" }));
    const outs = await Promise.all(procs.map(async (p) => ({ code: await p.exited, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() })));
    for (const o of outs) expect(o).toMatchObject({ code: 0, err: "" });
    const dir = nativeDirFor(e, base);
    for (const f of e.files) {
      expect(statSync(join(dir, f.name)).size).toBe(f.size);
      expect(sha256File(join(dir, f.name))).toBe(f.sha256);
    }
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(existsSync(join(dir, ".verified.json"))).toBe(true);
    expect(ensureNativeFiles(e, base, "hash").unpacked).toEqual([]);
  });
});

/**
 * These checks need root (to chown to another user): skipped (shown as skips)
 * when not root, except under CI, where they run and fail saying so.
 */
const notRoot = process.geteuid?.() !== 0 && !process.env.CI;
function requireRoot(): void {
  if (process.geteuid?.() !== 0) throw new Error("these tests must run as root (CI is set, so this is a failure, not a skip)");
}

const NOBODY = 65534;

describe("as root, DuckDB's library is loaded only from where root alone can write", () => {
  it.skipIf(notRoot)("refuses a folder another user owns or may write, naming it", () => {
    requireRoot();
    const { e, base } = fakeEmbedded();
    mkdirSync(base);
    chownSync(base, NOBODY, NOBODY);
    expect(() => ensureNativeFiles(e, base, "stamp", { rootOnly: true })).toThrow(new RegExp(`refusing to load DuckDB's native library as root from .*: ${base} is owned by uid ${NOBODY}, not root, so another user could put their own code there; set SWITCHYARD_NATIVE_DIR`));
    chownSync(base, 0, NOBODY);
    chmodSync(base, 0o775);
    expect(whyNotRootOnly(base)).toBe(`${base} is writable by group ${NOBODY}`);
    chmodSync(base, 0o757);
    expect(whyNotRootOnly(base)).toBe(`${base} is writable by every user`);
    // Sticky and world-writable like /tmp: fine above, never for the folder itself.
    chmodSync(base, 0o1777);
    expect(whyNotRootOnly(base)).toBe(`${base} is writable by every user`);
    expect(ensureNativeFiles(e, base, "stamp", { rootOnly: true }).unpacked).toEqual(["libduckdb.so", "duckdb.node"]);
  });

  it.skipIf(notRoot)("replaces a file another user owns or may write, even when its stamp matches", () => {
    requireRoot();
    const { e, base } = fakeEmbedded();
    const { dir } = ensureNativeFiles(e, base, "hash", { rootOnly: true });
    const node = join(dir, "duckdb.node");
    const lib = join(dir, "libduckdb.so");
    expect(statSync(node).uid).toBe(0);
    // chown and chmod leave size, mtime and inode alone: the stamp still matches.
    chownSync(node, NOBODY, NOBODY);
    chmodSync(lib, 0o757);
    const again = ensureNativeFiles(e, base, "stamp", { rootOnly: true });
    expect(again.unpacked).toEqual(["libduckdb.so", "duckdb.node"]);
    expect(statSync(node).uid).toBe(0);
    expect(statSync(lib).mode & 0o777).toBe(0o755);
    // As another user (not root) the same files are reused on the stamp alone: no extra work.
    chownSync(node, NOBODY, NOBODY);
    expect(ensureNativeFiles(e, base, "stamp")).toMatchObject({ unpacked: [], checked: "stamp" });
  });

  it.skipIf(notRoot)("loads through a symbolic link only by its resolved path, and only when that is root-only", () => {
    requireRoot();
    const { e, base, src } = fakeEmbedded();
    const userDir = join(src, "user");
    mkdirSync(userDir);
    chownSync(userDir, NOBODY, NOBODY);
    mkdirSync(base);
    symlinkSync(base, join(userDir, "link"));
    // The link sits where another user could change it; what counts is where it leads.
    const got = ensureNativeFiles(e, join(userDir, "link"), "stamp", { rootOnly: true });
    expect(got.dir).toBe(nativeDirFor(e, base));
    const theirs = join(src, "theirs");
    mkdirSync(theirs);
    chownSync(theirs, NOBODY, NOBODY);
    symlinkSync(theirs, join(src, "root-link"));
    expect(() => ensureNativeFiles(e, join(src, "root-link"), "stamp", { rootOnly: true })).toThrow(`${theirs} is owned by uid ${NOBODY}`);
  });

  it.skipIf(notRoot)("gives way to root's own folder, and refuses with what to do when that is not root-only either", () => {
    requireRoot();
    const { src } = fakeEmbedded();
    const service = join(src, "var-lib-switchyard");
    mkdirSync(service);
    chownSync(service, NOBODY, NOBODY);
    const configured = join(service, "cache", "switchyard");
    const fallback = join(src, "var-cache-switchyard");
    expect(rootNativeBase(configured, fallback)).toBe(fallback);
    expect(rootNativeBase(join(src, "root-owned", "cache"), fallback)).toBe(join(src, "root-owned", "cache"));
    mkdirSync(fallback);
    chownSync(fallback, NOBODY, NOBODY);
    expect(() => rootNativeBase(configured, fallback)).toThrow(
      `refusing to load DuckDB's native library as root from ${configured}: ${service} is owned by uid ${NOBODY}, not root, so another user could put their own code there; ` +
      `root's own folder ${fallback} cannot be used either: ${fallback} is owned by uid ${NOBODY}, not root. ` +
      "Run this command as the user that owns the data folder (e.g. sudo -u switchyard switchyard …), or set SWITCHYARD_NATIVE_DIR to a folder that only root can write",
    );
  });
});
