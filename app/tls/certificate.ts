import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";

/** A certificate chain and its private key, checked, as PEM text. */
export interface CertificatePair {
  /** The leaf certificate first, then any intermediates. */
  cert: string;
  key: string;
  /** What the leaf says about itself (shown on the Settings page and in logs). */
  subject: string;
  names: string[];
  issuer: string;
  notBefore: Date;
  notAfter: Date;
}

/** A certificate or key that cannot be served; the message says which file and why. */
export class CertificateError extends Error {
  override name = "CertificateError";
}

function readPem(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied (the service user must be able to read it)" : (err as Error).message;
    throw new CertificateError(`${what} ${path}: cannot be read: ${why}`);
  }
  if (!text.includes("-----BEGIN ")) throw new CertificateError(`${what} ${path}: not a PEM file; allowed: PEM (-----BEGIN …-----)`);
  return text;
}

/**
 * Checks a PEM chain and key: both parse, the key belongs to the leaf, and the
 * leaf is valid at `now`. Throws CertificateError naming the file and the problem.
 */
export function checkCertificatePair(cert: string, key: string, now = new Date(), files = { cert: "certificate", key: "key" }): CertificatePair {
  const firstPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(cert)?.[0];
  if (!firstPem) throw new CertificateError(`${files.cert}: holds no certificate (-----BEGIN CERTIFICATE-----)`);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(firstPem);
  } catch (err) {
    throw new CertificateError(`${files.cert}: the certificate does not parse: ${(err as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new CertificateError(`${files.key}: the private key does not parse (an unencrypted PEM key is needed): ${(err as Error).message}`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new CertificateError(`${files.key} does not belong to the certificate in ${files.cert} (subject ${leaf.subject.replace(/\n/g, ", ")}); give the key the certificate was issued for`);
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now.getTime()) throw new CertificateError(`${files.cert}: the certificate expired on ${notAfter.toISOString()}; renew it`);
  if (notBefore.getTime() > now.getTime()) throw new CertificateError(`${files.cert}: the certificate is not valid before ${notBefore.toISOString()} (check the clock)`);
  const names = (leaf.subjectAltName ?? "").split(",").map((s) => s.trim().replace(/^(DNS|IP Address):/, "")).filter((s) => s !== "");
  return { cert, key, subject: leaf.subject.replace(/\n/g, ", "), names, issuer: leaf.issuer.replace(/\n/g, ", "), notBefore, notAfter };
}

/** Reads and checks a certificate file and key file (see checkCertificatePair). */
export function readCertificatePair(certFile: string, keyFile: string, now = new Date()): CertificatePair {
  const cert = readPem(certFile, "TLS certificate");
  const key = readPem(keyFile, "TLS key");
  return checkCertificatePair(cert, key, now, { cert: `TLS certificate ${certFile}`, key: `TLS key ${keyFile}` });
}
