// `gatehouse agents revoke NAME`: through the API (the gateway drops the agent's tunnels at once),
// or with --config directly in the store (running gateways drop it within a heartbeat, 10 s).

import type { Command } from "commander";
import { AuditLog } from "../../audit/log.ts";
import { loadConfigFile } from "../../config/load.ts";
import { openStore } from "../../store/store.ts";
import { AgentDirectory } from "../../tunnel/directory.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action } from "../output.ts";

export function register(agents: Command): void {
  addApiOptions(agents.command("revoke").argument("<name>", "agent name").description("revoke an agent's secret and drop its tunnels"))
    .option("--config <file>", "revoke directly in the store instead of through the API (gateways notice within 10 s)")
    .action(
      action(async (name: string, o: ApiOptions & { config?: string }) => {
        if (o.config) {
          const cfg = loadConfigFile(o.config);
          const store = await openStore(cfg.store.url, { poolSize: 2 });
          try {
            await new AgentDirectory(store).revoke(name, Date.now(), cfg.agents.map((a) => a.name));
            const audit = new AuditLog(store);
            await audit.append({ type: "agent.revoked", data: { agent: name, via: "cli" } });
            await audit.drain();
          } finally {
            await store.close();
          }
          process.stdout.write(`agent "${name}" revoked; running gateways drop its tunnels within 10 s\n`);
          return;
        }
        const r = await new ApiClient(o).request<{ tunnelsDropped: number }>("POST", `/api/v1/agents/${encodeURIComponent(name)}/revoke`, {});
        process.stdout.write(`agent "${name}" revoked; ${r.tunnelsDropped} tunnel(s) dropped\n`);
      }),
    );
}
