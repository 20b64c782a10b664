import { X509Certificate } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { rootCertificates } from "node:tls";

/**
 * Whom outbound TLS trusts: wss:// destinations and https:// webhooks check the
 * remote's certificate against the system's roots, plus the CAs of the
 * tls_ca_file setting (a lab's own CA). Set by the server at start and when the
 * setting changes; relay code spreads `outboundTls()` into fetch and WebSocket.
 */
let extraCas: string[] = [];
let options: { tls?: { ca: string[] } } = {};

/** The largest CA file read: a bundle of every public root is about 200 KiB. */
export const CA_FILE_MAX_BYTES = 1024 * 1024;

/**
 * The certificates in a PEM CA file, or a message saying why it cannot be used.
 * Only a regular file of at most CA_FILE_MAX_BYTES is read: a FIFO, a device
 * (/dev/zero) or a huge file would block the server or fill its memory. It is
 * opened non-blocking and checked on the open descriptor, so it cannot be
 * swapped for something else between the check and the read.
 */
export function readCaFile(path: string): { pems: string[] } | { problem: string } {
  let text: string;
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = fstatSync(fd);
    if (!st.isFile()) return { problem: `${path} is not a regular file (a directory, FIFO, socket or device)` };
    if (st.size > CA_FILE_MAX_BYTES) return { problem: `${path} is ${st.size} bytes, more than the ${CA_FILE_MAX_BYTES} (1 MiB) a CA file may have` };
    const buf = Buffer.alloc(CA_FILE_MAX_BYTES + 1);
    let n = 0;
    for (let got; n < buf.length && (got = readSync(fd, buf, n, buf.length - n, null)) > 0;) n += got;
    if (n > CA_FILE_MAX_BYTES) return { problem: `${path} is more than the ${CA_FILE_MAX_BYTES} bytes (1 MiB) a CA file may have` };
    text = buf.subarray(0, n).toString("utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { problem: `${path} cannot be read: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (err as Error).message}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) return { problem: `${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)` };
  for (const [i, pem] of pems.entries()) {
    try {
      new X509Certificate(pem);
    } catch (err) {
      return { problem: `${path}: certificate ${i + 1} does not parse: ${(err as Error).message}` };
    }
  }
  return { pems };
}

/** Trusts the CAs in `path` besides the system's for outbound TLS ("" for the system's only). Throws with the problem. */
export function trustCaFile(path: string): void {
  if (path === "") {
    extraCas = [];
    options = {};
    return;
  }
  const r = readCaFile(path);
  if ("problem" in r) throw new Error(`tls_ca_file: ${r.problem}`);
  extraCas = r.pems;
  options = { tls: { ca: [...rootCertificates, ...extraCas] } };
}

/** Options to spread into fetch() and new WebSocket() for an outbound connection. */
export function outboundTls(): { tls?: { ca: string[] } } {
  return options;
}

const TLS_CODES: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "is not signed by a trusted CA",
  UNABLE_TO_GET_ISSUER_CERT: "is not signed by a trusted CA",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "is not signed by a trusted CA",
  SELF_SIGNED_CERT_IN_CHAIN: "chains to a CA that is not trusted",
  DEPTH_ZERO_SELF_SIGNED_CERT: "is self-signed",
  CERT_HAS_EXPIRED: "has expired",
  CERT_NOT_YET_VALID: "is not valid yet",
  ERR_TLS_CERT_ALTNAME_INVALID: "is for another name",
  HOSTNAME_MISMATCH: "is for another name",
};

/**
 * A clear status line for an outbound TLS failure ("the certificate of
 * relay.example.org:443 has expired (CERT_HAS_EXPIRED)"), or null when `err`
 * is not about the remote's certificate. Takes a fetch error or a WebSocket error event.
 */
export function describeTlsFailure(err: unknown, url: string): string | null {
  const e = (err as { error?: unknown }).error ?? err;
  const code = (e as { code?: string }).code ?? /\b([A-Z][A-Z_]{8,})\b/.exec((e as { message?: string }).message ?? "")?.[1];
  if (!code || !(code in TLS_CODES)) return null;
  let where = url;
  try {
    where = new URL(url).host;
  } catch {}
  const hint = code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID" || code.includes("ALTNAME") || code === "HOSTNAME_MISMATCH"
    ? "the remote must serve a valid certificate for its name"
    : extraCas.length > 0 ? "the tls_ca_file setting does not hold its CA either" : "for a lab's own CA, set tls_ca_file to its CA certificate";
  return `the TLS certificate of ${where} ${TLS_CODES[code]} (${code}); ${hint}`;
}
