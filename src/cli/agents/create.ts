// `gatehouse agents create NAME --config F`: register a network-resident agent in the store and
// print its secret once — as the last line, so scripts can take it with `tail -n1`.

import type { Command } from "commander";
import { AuditLog } from "../../audit/log.ts";
import { loadConfigFile } from "../../config/load.ts";
import { openStore } from "../../store/store.ts";
import { AgentDirectory } from "../../tunnel/directory.ts";
import { action } from "../output.ts";

export function register(agents: Command): void {
  agents
    .command("create")
    .argument("<name>", "agent name (connections name it in `agent:`)")
    .description("create an agent and print its secret (once, as the last line)")
    .requiredOption("--config <file>", "configuration file (its store.url is written)")
    .action(
      action(async (name: string, o: { config: string }) => {
        const cfg = loadConfigFile(o.config);
        const store = await openStore(cfg.store.url, { poolSize: 2 });
        try {
          const secret = await new AgentDirectory(store).create(name);
          const audit = new AuditLog(store);
          await audit.append({ type: "agent.created", data: { agent: name, via: "cli" } });
          await audit.drain();
          const serves = cfg.connections.filter((c) => (Array.isArray(c.agent) ? c.agent : [c.agent]).includes(name)).map((c) => c.name);
          process.stderr.write(
            `agent "${name}" created${serves.length ? `; it will serve ${serves.join(", ")}` : "; no connection names it yet (set `agent: ${name}` on a connection)"}.\n` +
              "Its secret follows. It is shown only now: give it to the agent as GATEHOUSE_AGENT_TOKEN.\n" +
              `  gatehouse agent --gateway <the gateway's API URL>   (with GATEHOUSE_AGENT_TOKEN set)\n`,
          );
          process.stdout.write(`${secret}\n`);
        } finally {
          await store.close();
        }
      }),
    );
}
