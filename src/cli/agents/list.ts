// `gatehouse agents list`: agents with their live status, through the gateway's API.

import type { Command } from "commander";
import type { AgentStatus } from "../../tunnel/server.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import { relative, table } from "../table.ts";

export function register(agents: Command): void {
  addApiOptions(agents.command("list").description("list agents: connected or not, tunnels, versions, connections served (api.adminGroups)"))
    .option("--json", "print JSON")
    .action(
      action(async (o: ApiOptions & { json?: boolean }) => {
        const res = await new ApiClient(o).request<{ items: AgentStatus[] }>("GET", "/api/v1/agents");
        if (o.json) return printJson(res.items);
        if (!res.items.length) return void process.stdout.write("no agents (create one with `gatehouse agents create NAME --config F`)\n");
        process.stdout.write(
          `${table(
            ["NAME", "STATUS", "TUNNELS", "STREAMS", "VERSION", "LAST SEEN", "CONNECTIONS"],
            res.items.map((a) => [a.name, a.status, String(a.tunnels.length), String(a.tunnels.reduce((n, t) => n + t.streams, 0)), [...new Set(a.tunnels.map((t) => t.version ?? "?"))].join(",") || "-", a.status === "connected" ? "now" : relative(a.lastSeenAt), a.connections.join(",") || "-"]),
          )}\n`,
        );
      }),
    );
}
