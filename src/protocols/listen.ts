// Start a protocol listener: resolves with its address once it listens, rejects if it cannot
// (port in use, address not available) with GH-CONFIG-004 naming the configuration key — shared by
// the PostgreSQL and HTTP engines and the API.

import type { AddressInfo, Server } from "node:net";
import { GatehouseError } from "../domain/errors.ts";

/** A listen error as GH-CONFIG-004 naming the key (`listeners.http`) and the address; other errors as they are. */
export function listenError(e: unknown, key: string, host: string, port: number): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return e;
  const why = code === "EADDRINUSE" ? "the port is in use" : code === "EADDRNOTAVAIL" ? "the host is not an address of this machine" : code === "EACCES" ? "permission denied" : code;
  return new GatehouseError("LISTEN_FAILED", `${key}: ${host.includes(":") ? `[${host}]` : host}:${port}: ${why} (${code})`);
}

export function listen(server: Server, port: number, host: string, key: string): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    const fail = (e: unknown) => reject(listenError(e, key, host, port));
    server.once("error", fail);
    server.listen(port, host, () => {
      server.off("error", fail);
      resolve(server.address() as AddressInfo);
    });
  });
}
