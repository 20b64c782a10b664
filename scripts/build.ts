#!/usr/bin/env bun
/**
 * `npm run build`: compiles dist/switchyard-linux-x64 and dist/switchyard-linux-arm64
 * with DuckDB's native library inside, copies install.sh beside them and writes
 * dist/SHA256SUMS: the files of a release.
 *
 *   bun scripts/build.ts [--target linux-x64|linux-arm64 (repeatable)] [--outdir dist]
 */
import type { BunPlugin } from "bun";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fetchBindings, type NativePackage } from "./native-package.ts";

const ROOT = resolve(import.meta.dir, "..");
// x64 uses Bun's baseline runtime (x86-64-v2, any CPU since 2008): the default one needs
// AVX2 and dies with SIGILL on older CPUs and on VMs with a conservative CPU model.
const TARGETS = { "linux-x64": "bun-linux-x64-baseline", "linux-arm64": "bun-linux-arm64" } as const;
type Platform = keyof typeof TARGETS;
// The CLI: the query engine and compaction run as child processes of the same binary
// (`switchyard __query-engine`, `switchyard __compact`), so there is one entry.
const ENTRIES = ["app/main.ts"];

function fail(msg: string): never {
  console.error(`build: ${msg}`);
  process.exit(1);
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function gitCommit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT, stderr: "ignore" });
  const commit = r.exitCode === 0 ? r.stdout.toString().trim() : "unknown";
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"], { cwd: ROOT, stderr: "ignore" }).stdout.toString().trim();
  return dirty ? `${commit}-dirty` : commit;
}

/** Points `@duckdb/node-bindings` at native/bindings.cjs and native/embedded.ts at the target's files. */
function nativePlugin(pkg: NativePackage): BunPlugin {
  const files = ["libduckdb.so", "duckdb.node"].map((name) => {
    const path = join(pkg.dir, name);
    if (!existsSync(path)) fail(`${path} is missing from ${pkg.name}@${pkg.version}`);
    return { name, path, size: statSync(path).size, sha256: sha256(path) };
  });
  const embeddedModule = [
    ...files.map((f, i) => `import f${i} from ${JSON.stringify(f.path)} with { type: "file" };`),
    `export const embedded = ${JSON.stringify({ package: pkg.name, version: pkg.version, platform: pkg.platform, files: files.map((f) => ({ name: f.name, path: "", size: f.size, sha256: f.sha256 })) })};`,
    ...files.map((_, i) => `embedded.files[${i}].path = f${i};`),
  ].join("\n");
  return {
    name: "switchyard-native",
    setup(build) {
      build.onResolve({ filter: /^@duckdb\/node-bindings$/ }, () => ({ path: join(ROOT, "native", "bindings.cjs") }));
      build.onResolve({ filter: /[\\/]native[\\/]embedded\.ts$|^\.\/embedded\.ts$/ }, (args) =>
        resolve(dirname(args.importer), args.path) === join(ROOT, "native", "embedded.ts") ? { path: "embedded", namespace: "switchyard-native" } : undefined);
      build.onLoad({ filter: /^embedded$/, namespace: "switchyard-native" }, () => ({ contents: embeddedModule, loader: "js" }));
    },
  };
}

async function buildOne(platform: Platform, outdir: string, commit: string): Promise<void> {
  const pkg = await fetchBindings(platform, join(ROOT, ".cache", "native"));
  const outfile = join(outdir, `switchyard-${platform}`);
  const started = performance.now();
  const result = await Bun.build({
    entrypoints: ENTRIES.map((e) => join(ROOT, e)),
    compile: { target: TARGETS[platform], outfile },
    minify: true,
    naming: "[name].[ext]",
    define: { SWITCHYARD_COMMIT: JSON.stringify(commit) },
    plugins: [nativePlugin(pkg)],
  });
  if (!result.success) fail(`${platform}: ${result.logs.map((l) => l.message).join("\n")}`);
  console.log(`build: ${outfile} (${(statSync(outfile).size / 1048576).toFixed(1)} MiB, DuckDB ${pkg.version}, commit ${commit}) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

const { values } = parseArgs({ options: { target: { type: "string", multiple: true }, outdir: { type: "string" } } });
const platforms = (values.target ?? Object.keys(TARGETS)) as string[];
for (const p of platforms) if (!(p in TARGETS)) fail(`--target ${JSON.stringify(p)} is not valid; allowed: ${Object.keys(TARGETS).join(", ")}`);
const outdir = resolve(values.outdir ?? join(ROOT, "dist"));
mkdirSync(outdir, { recursive: true });
const commit = gitCommit();
for (const p of platforms as Platform[]) await buildOne(p, outdir, commit);

// The release folder also carries install.sh (curl -fsSL <release url>/install.sh | sh).
copyFileSync(join(ROOT, "install.sh"), join(outdir, "install.sh"));
// SHA256SUMS lists every binary in the folder (also one built by an earlier run for the other target).
const sums = [...Object.keys(TARGETS).map((p) => `switchyard-${p}`), "install.sh"]
  .map((f) => join(outdir, f))
  .filter((f) => existsSync(f))
  .map((f) => `${sha256(f)}  ${basename(f)}\n`)
  .join("");
writeFileSync(join(outdir, "SHA256SUMS.tmp"), sums);
renameSync(join(outdir, "SHA256SUMS.tmp"), join(outdir, "SHA256SUMS"));
console.log(`build: ${join(outdir, "SHA256SUMS")}\n${sums.trimEnd()}`);
