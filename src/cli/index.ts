#!/usr/bin/env node
// The `gatehouse` command. One file per command, grouped by noun (src/cli/<noun>/<verb>.ts).

import { Command } from "commander";
import { VERSION } from "../version.ts";
import * as auditCheckpoint from "./audit/checkpoint.ts";
import * as auditCheckpoints from "./audit/checkpoints.ts";
import * as auditExport from "./audit/export.ts";
import * as auditSearch from "./audit/search.ts";
import * as auditVerify from "./audit/verify.ts";
import * as agent from "./agent.ts";
import * as agentsCreate from "./agents/create.ts";
import * as agentsList from "./agents/list.ts";
import * as agentsRevoke from "./agents/revoke.ts";
import * as configCheck from "./config/check.ts";
import * as configSchema from "./config/schema.ts";
import * as devToken from "./dev/token.ts";
import * as gateway from "./gateway.ts";
import * as policyCheck from "./policy/check.ts";
import * as reviewsApprove from "./reviews/approve.ts";
import * as reviewsDeny from "./reviews/deny.ts";
import * as reviewsList from "./reviews/list.ts";
import * as reviewsModify from "./reviews/modify.ts";
import * as reviewsShow from "./reviews/show.ts";
import * as retentionRun from "./retention/run.ts";
import * as sessionsExport from "./sessions/export.ts";
import * as sessionsList from "./sessions/list.ts";
import * as sessionsReplay from "./sessions/replay.ts";
import * as sessionsShow from "./sessions/show.ts";

export function buildProgram(): Command {
  const program = new Command("gatehouse").description("identity-aware access gateway for AI coding agents").version(VERSION);
  program.showHelpAfterError();
  gateway.register(program);
  agent.register(program);
  const agents = program.command("agents").description("network-resident agents: create (prints the secret once), list, revoke");
  for (const c of [agentsCreate, agentsList, agentsRevoke]) c.register(agents);
  const config = program.command("config").description("validate configuration and print its schema");
  configCheck.register(config);
  configSchema.register(config);
  const audit = program.command("audit").description("the hash-chained audit trail: verify, search, export, checkpoints");
  for (const c of [auditVerify, auditSearch, auditExport, auditCheckpoints, auditCheckpoint]) c.register(audit);
  policyCheck.register(program.command("policy").description("dry-run policy decisions"));
  const reviews = program.command("reviews").description("decide held operations (uses --api/GATEHOUSE_API and your own --token/GATEHOUSE_TOKEN)");
  for (const c of [reviewsList, reviewsShow, reviewsApprove, reviewsDeny, reviewsModify]) c.register(reviews);
  const sessions = program.command("sessions").description("recorded sessions: list, show, replay, export (needs an auditor group; uses --api/GATEHOUSE_API and --token/GATEHOUSE_TOKEN)");
  for (const c of [sessionsList, sessionsShow, sessionsReplay, sessionsExport]) c.register(sessions);
  retentionRun.register(program.command("retention").description("prune old recordings and audit events"));
  devToken.register(program.command("dev").description("development helpers (tokens from the local dev issuer)"));
  return program;
}

await buildProgram().parseAsync(process.argv);
