// `gatehouse config schema`: the JSON Schema of the configuration, for editors (yaml-language-server).

import type { Command } from "commander";
import { configJsonSchema } from "../../config/schema.ts";
import { action, printJson } from "../output.ts";

export function register(config: Command): void {
  config
    .command("schema")
    .description("print the configuration's JSON Schema (point your editor's YAML plugin at it)")
    .action(action(() => printJson(configJsonSchema())));
}
