// Start a protocol listener: resolves with its address once it listens, rejects if it cannot
// (port in use, address not available) — shared by the PostgreSQL and HTTP engines.

import type { AddressInfo, Server } from "node:net";

export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
