import { open } from "node:fs/promises";
import type { Settings } from "../config/settings.ts";
import type { S3Credentials } from "../config/startup.ts";

/** Bytes read from a file at a time while uploading or hashing. */
const READ_BYTES = 1024 * 1024;
/** Size of the parts of a multipart upload (the writer sends one per flush). */
export const PART_BYTES = 5 * 1024 * 1024;

/** Where the log is offloaded: the bucket's settings and the credentials in force. */
export interface S3Target {
  endpoint: string;
  bucket: string;
  prefix: string;
  region: string;
  credentials: S3Credentials | null;
}

/** The target from the settings and the credentials in force. */
export function s3Target(s: Settings, credentials: S3Credentials | null): S3Target {
  return { endpoint: s.offload_s3_url, bucket: s.offload_bucket, prefix: s.offload_prefix, region: s.offload_region, credentials };
}

/** A client for `t` (Bun's S3 client). */
export function s3Client(t: S3Target): Bun.S3Client {
  return new Bun.S3Client({
    bucket: t.bucket, region: t.region, ...(t.endpoint ? { endpoint: t.endpoint } : {}),
    ...(t.credentials ? { accessKeyId: t.credentials.accessKeyId, secretAccessKey: t.credentials.secretAccessKey } : {}),
  });
}

/**
 * The key of a local Parquet file (`stream=…/date=…/<file>`, its path under the
 * logs folder, with the stream folder's encoding kept as it is) in the store:
 * `<prefix>/node=<node id>/stream=…/date=…/<file>`.
 */
export function offloadKey(prefix: string, nodeId: string, path: string): string {
  return `${prefix ? `${prefix}/` : ""}node=${nodeId}/${path}`;
}

/** What a key under the prefix names, when it is one of the log's (null: some other object). */
export function parseOffloadKey(prefix: string, key: string): { node: string; path: string; date: string; stream: string } | null {
  const rest = prefix ? (key.startsWith(`${prefix}/`) ? key.slice(prefix.length + 1) : null) : key;
  const m = rest === null ? null : /^node=([A-Za-z0-9][A-Za-z0-9_-]{0,63})\/(stream=([^/]+)\/date=(\d{4}-\d{2}-\d{2})\/[A-Za-z0-9_.-]+\.parquet)$/.exec(rest);
  if (!m || m[3] === "." || m[3] === ".." || m[2]!.includes("/../")) return null;
  let stream: string;
  try {
    stream = decodeURIComponent(m[3]!);
  } catch {
    return null;
  }
  return { node: m[1]!, path: m[2]!, stream, date: m[4]! };
}

/** A local file's checksums: MD5 of the whole, and S3's multipart ETag for PART_BYTES parts. */
export interface FileSums {
  size: number;
  md5: string;
  multipartEtag: string;
}

/** Sums a file as it is read: MD5 of the whole and of each PART_BYTES part (for the multipart ETag). */
class FileSummer {
  private readonly whole = new Bun.CryptoHasher("md5");
  private readonly partSums: Buffer[] = [];
  private part = new Bun.CryptoHasher("md5");
  private inPart = 0;
  size = 0;

  /** Adds the next chunk (never more than READ_BYTES, which divides PART_BYTES); true when it completed a part. */
  add(chunk: Uint8Array): boolean {
    this.whole.update(chunk);
    this.part.update(chunk);
    this.inPart += chunk.byteLength;
    this.size += chunk.byteLength;
    if (this.inPart < PART_BYTES) return false;
    this.partSums.push(Buffer.from(this.part.digest() as Uint8Array));
    this.part = new Bun.CryptoHasher("md5");
    this.inPart = 0;
    return true;
  }

  sums(): FileSums {
    if (this.inPart > 0 || this.partSums.length === 0) this.partSums.push(Buffer.from(this.part.digest() as Uint8Array));
    const multi = new Bun.CryptoHasher("md5");
    multi.update(Buffer.concat(this.partSums));
    return { size: this.size, md5: this.whole.digest("hex"), multipartEtag: `${multi.digest("hex")}-${this.partSums.length}` };
  }
}

/**
 * Uploads the file at `path` to `key`, streaming it (a megabyte read at a time,
 * one part in flight: memory stays flat whatever the file's size), and returns
 * its size and checksums as read while sending. The file is opened once, so a
 * merge that removes it meanwhile does not cut the upload short. `stopping`
 * true ends it early with an error (at shutdown).
 */
export async function uploadFile(client: Bun.S3Client, key: string, path: string, stopping: () => boolean = () => false): Promise<FileSums> {
  const fh = await open(path, "r");
  const summer = new FileSummer();
  const writer = client.file(key).writer({ partSize: PART_BYTES, queueSize: 1, retry: 1, type: "application/vnd.apache.parquet" });
  try {
    const buf = Buffer.allocUnsafe(READ_BYTES);
    for (;;) {
      // Not ended, a multipart upload is never an object (a store drops unfinished uploads).
      if (stopping()) throw new Error("stopped");
      const { bytesRead } = await fh.read(buf, 0, READ_BYTES, summer.size);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      const partDone = summer.add(chunk);
      // The writer copies what it is given.
      await writer.write(chunk);
      if (partDone) await writer.flush();
    }
    await writer.end();
  } finally {
    await fh.close();
  }
  return summer.sums();
}

/** A local file's size and checksums (read a megabyte at a time), as uploadFile() gives them. */
export async function fileSums(path: string): Promise<FileSums> {
  const fh = await open(path, "r");
  const summer = new FileSummer();
  try {
    const buf = Buffer.allocUnsafe(READ_BYTES);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, READ_BYTES, summer.size);
      if (bytesRead === 0) break;
      summer.add(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return summer.sums();
}

/**
 * Whether an object is at `key`. A HEAD that fails for another reason carries
 * no body (Bun then says only "an unexpected error"), so the question is asked
 * again as a listing, whose error says why (InvalidAccessKeyId, AccessDenied…).
 */
export async function objectExists(client: Bun.S3Client, key: string): Promise<boolean> {
  try {
    await client.file(key).stat();
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === "NoSuchKey") return false;
    const page = await client.list({ prefix: key, maxKeys: 1 });
    return (page.contents ?? []).some((o) => o.key === key);
  }
}

/** MD5 of an object, read back in a stream (when its ETag says nothing of its content). */
async function remoteMd5(client: Bun.S3Client, key: string): Promise<string> {
  const h = new Bun.CryptoHasher("md5");
  for await (const chunk of client.file(key).stream()) h.update(chunk as Uint8Array);
  return h.digest("hex");
}

/**
 * Checks that the object at `key` is the file whose sums are `sums`: its size,
 * and its ETag as the MD5 (a single PUT) or the multipart ETag of the parts
 * sent; when the ETag is neither of those forms (some stores make their own),
 * the object is read back and hashed. `etag` is the ETag an earlier check
 * accepted (the object unchanged since). Returns the problem (null: it matches)
 * and the object's ETag.
 */
export async function verifyObject(client: Bun.S3Client, key: string, sums: { size: number; md5: string; multipartEtag?: string; etag?: string }): Promise<{ problem: string | null; etag: string }> {
  let stat;
  try {
    stat = await client.file(key).stat();
  } catch (err) {
    if ((err as { code?: string }).code === "NoSuchKey") return { problem: "the object is missing", etag: "" };
    throw err;
  }
  const etag = stat.etag.replaceAll('"', "").toLowerCase();
  if (stat.size !== sums.size) return { problem: `size ${stat.size} in the store, ${sums.size} here`, etag };
  if (etag === sums.md5 || etag === sums.multipartEtag || etag === sums.etag) return { problem: null, etag };
  if (/^[0-9a-f]{32}$/.test(etag)) return { problem: `checksum (MD5) ${etag} in the store, ${sums.md5} here`, etag };
  const md5 = await remoteMd5(client, key);
  return { problem: md5 === sums.md5 ? null : `checksum (MD5, read back) ${md5} in the store, ${sums.md5} here`, etag };
}

/** A store's error as one line, with the credentials in force taken out should a store ever echo them. */
export function storeError(err: unknown, credentials: S3Credentials | null): string {
  const e = err as { code?: string; message?: string };
  let text = `${e.code && !String(e.message).includes(e.code) ? `${e.code}: ` : ""}${e.message ?? String(err)}`.split("\n")[0]!;
  for (const secret of [credentials?.secretAccessKey, credentials?.accessKeyId]) if (secret) text = text.replaceAll(secret, "…");
  return text;
}

/** Why `v` is not an access key id or secret key (null: it is one): printable ASCII without spaces, as S3 stores issue them. */
export function credentialProblem(v: unknown): string | null {
  return typeof v === "string" && /^[\x21-\x7e]{1,256}$/.test(v) ? null : "allowed: 1 to 256 printable characters without spaces";
}

/** Names of the stored S3 credentials in the settings store's secrets (never listed with the settings). */
export const S3_KEY_ID_SECRET = "s3_access_key_id";
export const S3_SECRET_SECRET = "s3_secret_access_key";

/** The credentials in force: the environment's (SWITCHYARD_S3_*, then AWS_*), else those stored in the settings store. */
export function offloadCredentials(fromEnv: S3Credentials | null | undefined, store: { getSecret(name: string): string | null }): S3Credentials | null {
  if (fromEnv) return fromEnv;
  const id = store.getSecret(S3_KEY_ID_SECRET);
  const secret = store.getSecret(S3_SECRET_SECRET);
  return id && secret ? { accessKeyId: id, secretAccessKey: secret, source: "settings" } : null;
}
