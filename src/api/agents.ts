// /api/v1/agents: the network-resident agents with their live status, and revocation (which drops
// the agent's tunnels at once). Members of api.adminGroups only.

import type { FastifyInstance } from "fastify";
import type { AuditLog } from "../audit/log.ts";
import type { AgentDirectory } from "../tunnel/directory.ts";
import type { TunnelServer } from "../tunnel/server.ts";
import { requireGroup } from "./auth.ts";
import type { ApiContext } from "./server.ts";

export function agentRoutes(d: { tunnels: TunnelServer; directory: AgentDirectory; audit: AuditLog; adminGroups: readonly string[] }) {
  return (app: FastifyInstance, ctx: ApiContext) => {
    app.get("/api/v1/agents", async (req) => {
      requireGroup(await ctx.principal(req), d.adminGroups, "listing agents");
      return { items: await d.tunnels.status() };
    });
    app.post<{ Params: { name: string } }>("/api/v1/agents/:name/revoke", async (req) => {
      const p = await ctx.principal(req);
      requireGroup(p, d.adminGroups, "revoking an agent");
      await d.directory.revoke(req.params.name, Date.now(), d.tunnels.tokenAgentNames);
      const dropped = d.tunnels.drop(req.params.name, "was revoked", "GH-AGENT-002");
      await d.audit.append({ type: "agent.revoked", principal: p, data: { agent: req.params.name, tunnelsDropped: dropped } });
      return { name: req.params.name, status: "revoked", tunnelsDropped: dropped };
    });
  };
}
