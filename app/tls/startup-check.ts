import { UsageError } from "../core/errors.ts";
import { CertificateError, readCertificatePair } from "./certificate.ts";
import { tlsMode, type TlsStartup } from "./startup.ts";

/**
 * For `check-config`: reads and checks the certificate files as `serve` would at
 * start. Returns a line describing the certificate, null without files, and
 * throws UsageError (exit 2) with serve's error for a pair it would refuse.
 */
export function checkTlsFiles(config: TlsStartup): string | null {
  const mode = tlsMode(config);
  if (mode.kind !== "files") return null;
  try {
    const pair = readCertificatePair(mode.cert, mode.key);
    return `tls certificate: ${pair.subject} (${pair.names.join(", ")}), valid until ${pair.notAfter.toISOString()}`;
  } catch (err) {
    if (err instanceof CertificateError) throw new UsageError(err.message);
    throw err;
  }
}
