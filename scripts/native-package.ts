import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

/** DuckDB's bindings package for one platform, unpacked on disk. */
export interface NativePackage {
  name: string;
  version: string;
  platform: string;
  /** The folder holding duckdb.node and libduckdb.so. */
  dir: string;
}

function run(cmd: string[], cwd: string): string {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (exit ${r.exitCode}): ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/**
 * The bindings package for `platform` at exactly the version of the installed
 * @duckdb/node-bindings: from node_modules when npm installed it (the host's
 * platform), else fetched once with `npm pack` into `cacheDir`.
 */
export async function fetchBindings(platform: string, cacheDir: string): Promise<NativePackage> {
  const version = (JSON.parse(readFileSync(join(ROOT, "node_modules/@duckdb/node-bindings/package.json"), "utf8")) as { version: string }).version;
  const name = `@duckdb/node-bindings-${platform}`;
  const installed = join(ROOT, "node_modules", name);
  if (existsSync(join(installed, "package.json"))) {
    const v = (JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as { version: string }).version;
    if (v === version) return { name, version, platform, dir: installed };
  }
  const dir = join(cacheDir, `node-bindings-${platform}-${version}`);
  if (existsSync(join(dir, "package.json"))) return { name, version, platform, dir };
  mkdirSync(cacheDir, { recursive: true });
  const tmp = mkdtempSync(join(cacheDir, ".fetch-"));
  try {
    console.log(`build: fetching ${name}@${version} from the npm registry (npm pack)`);
    const packed = JSON.parse(run(["npm", "pack", `${name}@${version}`, "--json", "--pack-destination", tmp], tmp)) as { filename: string }[];
    const tarball = join(tmp, packed[0]!.filename);
    run(["tar", "-xzf", tarball, "-C", tmp], tmp);
    const got = (JSON.parse(readFileSync(join(tmp, "package", "package.json"), "utf8")) as { version: string }).version;
    if (got !== version) throw new Error(`npm pack gave ${name}@${got}, not ${version}`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(tmp, "package"), dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { name, version, platform, dir };
}
