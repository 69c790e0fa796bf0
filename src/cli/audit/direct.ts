// For audit commands that read the store directly (`--config F`), so they work with the gateway
// stopped: open the configured store, run, close.

import { type CheckpointSigner, loadSigner } from "../../audit/checkpoints.ts";
import { loadConfigFile } from "../../config/load.ts";
import type { Config } from "../../config/schema.ts";
import { openStore, type Store } from "../../store/store.ts";

export async function withConfigStore<T>(configFile: string, fn: (store: Store, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfigFile(configFile);
  const store = await openStore(config.store.url, { poolSize: 2 });
  try {
    return await fn(store, config);
  } finally {
    await store.close();
  }
}

/**
 * The configured signing key, when this machine can read it. Reading the audit trail must not
 * need the private key: when it cannot be resolved, the caller goes on without it and says so.
 */
export async function configSigner(config: Config, warn: (msg: string) => void): Promise<CheckpointSigner | undefined> {
  try {
    return await loadSigner(config.audit.signingKey);
  } catch (e) {
    warn(`audit.signingKey not used: ${(e as Error).message}`);
    return undefined;
  }
}
