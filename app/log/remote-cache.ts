import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parseOffloadKey } from "./s3-store.ts";

/** An object of the offloaded log, as a listing gives it. */
export interface RemoteObject {
  key: string;
  size: number;
  etag: string;
}

/** Which offloaded partitions a remote query needs (by their keys: node, stream, dates). */
export interface RemoteFilter {
  nodes?: string[];
  streams?: string[];
  /** YYYY-MM-DD, inclusive. */
  since?: string;
  until?: string;
}

const INDEX = "index.json";

/**
 * A bounded local cache of offloaded Parquet files for remote queries, in
 * `dir` (DATA_DIR/remote-cache): files are kept under their keys' folders
 * (`node=…/stream=…/date=…/<file>`, so DuckDB reads node, stream and date from
 * the path) up to `maxBytes` in all, the least recently used going first. A
 * cached file is used again while its object's size and ETag are unchanged.
 */
/** A `.part` download older than this was left by a run that was killed. */
const STALE_PART_MS = 3_600_000;

export class RemoteCache {
  private readonly index: Record<string, { size: number; etag: string; used: number }>;

  constructor(readonly dir: string, private readonly maxBytes: number) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      this.index = JSON.parse(readFileSync(join(dir, INDEX), "utf8"));
    } catch {
      this.index = {};
    }
    this.removeStaleParts();
  }

  /**
   * Removes downloads a killed run left behind (`*.part` older than an hour:
   * a running download renames or removes its own well before), which the
   * index does not count against the cache's size.
   */
  private removeStaleParts(): void {
    const before = Date.now() - STALE_PART_MS;
    for (const name of readdirSync(this.dir, { recursive: true }) as string[]) {
      if (!name.endsWith(".part")) continue;
      const path = join(this.dir, name);
      try {
        if (statSync(path).mtimeMs < before) rmSync(path, { force: true });
      } catch {
        // Gone meanwhile (another run removed it).
      }
    }
  }

  /** Lists the log's objects under `prefix` that `filter` selects (pruned by the keys, before anything is downloaded). */
  static async list(client: Bun.S3Client, prefix: string, filter: RemoteFilter = {}): Promise<{ objects: RemoteObject[]; skipped: string[] }> {
    const objects: RemoteObject[] = [];
    const skipped: string[] = [];
    // One node's listing when only one is asked for: the store does the pruning.
    const listPrefixes = filter.nodes?.length ? filter.nodes.map((n) => `${prefix ? `${prefix}/` : ""}node=${n}/`) : [prefix ? `${prefix}/` : ""];
    for (const p of listPrefixes) {
      let token: string | undefined;
      for (;;) {
        const page = await client.list({ prefix: p, ...(token ? { continuationToken: token } : {}) });
        for (const o of page.contents ?? []) {
          const k = parseOffloadKey(prefix, o.key);
          if (!k) {
            skipped.push(o.key);
            continue;
          }
          if (filter.streams?.length && !filter.streams.includes(k.stream)) continue;
          if ((filter.since && k.date < filter.since) || (filter.until && k.date > filter.until)) continue;
          objects.push({ key: o.key, size: o.size ?? 0, etag: (o.eTag ?? "").replaceAll('"', "").toLowerCase() });
        }
        if (!page.isTruncated || !page.nextContinuationToken) break;
        token = page.nextContinuationToken;
      }
    }
    return { objects: objects.sort((a, b) => a.key.localeCompare(b.key)), skipped };
  }

  /**
   * Makes every object of `objects` a local file (downloading, streamed, what
   * is not cached or has changed), then evicts the least recently used others
   * past the size limit. Returns the local paths. Throws when the objects alone
   * are more than the cache may hold.
   */
  async fetch(client: Bun.S3Client, prefix: string, objects: RemoteObject[]): Promise<string[]> {
    const need = objects.reduce((a, o) => a + o.size, 0);
    if (need > this.maxBytes) {
      throw new Error(`the query needs ${mb(need)} MiB of offloaded partitions, more than the remote cache holds (offload_cache_mb ${mb(this.maxBytes)}); narrow it with --stream, --node, --since and --until, or raise offload_cache_mb`);
    }
    const now = Date.now();
    const paths: string[] = [];
    // Room first: the least recently used files this query does not need go before anything is downloaded,
    // so the cache stays within its size also while downloading (not only once the query has its files).
    const needed = new Set(objects.map((o) => this.rel(prefix, o)));
    this.evict(needed, need);
    for (const o of objects) {
      const rel = this.rel(prefix, o);
      const path = join(this.dir, rel);
      const known = this.index[rel];
      if (!(known && known.size === o.size && known.etag === o.etag && existsSync(path) && statSync(path).size === o.size)) {
        await download(client, o, path);
      }
      this.index[rel] = { size: o.size, etag: o.etag, used: now };
      paths.push(path);
    }
    this.evict(new Set(paths.map((p) => p.slice(this.dir.length + 1))));
    writeFileSync(join(this.dir, INDEX), JSON.stringify(this.index));
    return paths;
  }

  /** Cached bytes in all. */
  get bytes(): number {
    return Object.values(this.index).reduce((a, e) => a + e.size, 0);
  }

  /** Where an object is kept, under the cache folder: `node=…/stream=…/date=…/<file>`. */
  private rel(prefix: string, o: RemoteObject): string {
    const k = parseOffloadKey(prefix, o.key)!;
    return `node=${k.node}/${k.path}`;
  }

  /**
   * Removes the least recently used files not in `keep` until the cache fits
   * its size; with `room`, until the files not in `keep` and `room` bytes do.
   */
  private evict(keep: Set<string>, room?: number): void {
    let total = room === undefined ? this.bytes : Object.entries(this.index).reduce((a, [rel, e]) => (keep.has(rel) ? a : a + e.size), room);
    for (const [rel, e] of Object.entries(this.index).sort((a, b) => a[1].used - b[1].used)) {
      if (total <= this.maxBytes) break;
      if (keep.has(rel)) continue;
      rmSync(join(this.dir, rel), { force: true });
      delete this.index[rel];
      total -= e.size;
    }
  }
}

const mb = (bytes: number) => Math.ceil(bytes / 1048576);

/**
 * Downloads `o` to `path` through a temporary file of its own (named with this
 * process's id and a random part, so two queries downloading the same object
 * at once do not write into one file), streamed; checks its size, and its MD5
 * when the ETag is one. The temporary file is removed on any failure.
 */
async function download(client: Bun.S3Client, o: RemoteObject, path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}-${crypto.randomUUID().slice(0, 8)}.part`;
  try {
    const fh = await open(tmp, "wx", 0o600);
    const md5 = new Bun.CryptoHasher("md5");
    let size = 0;
    try {
      for await (const chunk of client.file(o.key).stream()) {
        const bytes = chunk as Uint8Array;
        md5.update(bytes);
        size += bytes.byteLength;
        await fh.write(bytes);
      }
    } finally {
      await fh.close();
    }
    const sum = md5.digest("hex");
    if (size !== o.size || (/^[0-9a-f]{32}$/.test(o.etag) && sum !== o.etag)) {
      throw new Error(`downloading ${o.key} gave ${size} bytes with MD5 ${sum}; the store lists ${o.size} bytes, ETag ${o.etag}`);
    }
    // Another query may have put the same object there meanwhile: the rename replaces it with the same bytes.
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
