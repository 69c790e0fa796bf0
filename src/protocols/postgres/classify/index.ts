// The PostgreSQL classifier's public surface: what the engine and the gate may use. Keep the
// parse-tree walk and the rule tables private behind it; nothing here may perform I/O beyond
// loading the parser once.

export { DEFAULT_CACHE_ENTRIES, DEFAULT_MAX_KEY_LENGTH, LruCache, type LruCacheOptions, type LruCacheStats } from "./cache.ts";
export {
  analyzeSql,
  type ClassifierStats,
  classifierStats,
  classifySql,
  classifySqlUncached,
  clearClassifierCache,
  configureClassifierCache,
  initClassifier,
  isClassifierReady,
  type SqlAnalysis,
} from "./classify.ts";
export { functionEffect, KNOWN_FUNCTION_EFFECTS, PURE_BUILTIN_FUNCTIONS } from "./functions.ts";
export { kindRisk, mostDangerousKind, SQL_KIND_RISK, sortKindsByRisk } from "./risk.ts";
export {
  commitInSession,
  describeInSession,
  type PreparedEffectSummary,
  PreparedStatementRegistry,
  type PreparedStatementRegistryOptions,
  type SessionDescription,
} from "./session.ts";
