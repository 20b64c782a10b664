import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EmbeddedNative } from "../native/embedded.ts";
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
