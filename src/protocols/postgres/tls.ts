// The listener's TLS identity: a configured certificate and key (file:/env: references), or for
// development a self-signed certificate generated once with `openssl` and kept on disk.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createSecureContext, type SecureContext } from "node:tls";
import { GatehouseError } from "../../domain/errors.ts";
import { SecretResolver } from "../../agent/secrets.ts";

export interface ListenerTlsConfig {
  cert?: string | undefined;
  key?: string | undefined;
  selfSigned: boolean;
  selfSignedDir: string;
}

export function ensureSelfSigned(dir: string): { cert: string; key: string } {
  const certFile = join(dir, "gateway-cert.pem");
  const keyFile = join(dir, "gateway-key.pem");
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      execFileSync(
        "openssl",
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "825", "-subj", "/CN=gatehouse-dev", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1", "-keyout", keyFile, "-out", certFile],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
    } catch (e) {
      throw new GatehouseError("CONFIG_INVALID", `listeners.postgres.tls: generating a self-signed certificate with openssl failed (${(e as Error).message.split("\n")[0]}); install openssl or configure tls.cert and tls.key`);
    }
  }
  return { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
}

export async function listenerSecureContext(cfg: ListenerTlsConfig, secrets = new SecretResolver()): Promise<SecureContext | undefined> {
  let pair: { cert: string; key: string } | undefined;
  if (cfg.cert && cfg.key) pair = { cert: await secrets.resolve(cfg.cert), key: await secrets.resolve(cfg.key) };
  else if (cfg.cert || cfg.key) throw new GatehouseError("CONFIG_INVALID", "listeners.postgres.tls: set both cert and key, or neither");
  else if (cfg.selfSigned) pair = ensureSelfSigned(cfg.selfSignedDir);
  if (!pair) return undefined;
  try {
    return createSecureContext({ cert: pair.cert, key: pair.key, minVersion: "TLSv1.2" });
  } catch (e) {
    throw new GatehouseError("CONFIG_INVALID", `listeners.postgres.tls: the certificate or key is not usable PEM (${(e as Error).message})`);
  }
}
