// What a function call in SQL means for the gate. A call can do anything its body does, so
// only built-ins known to be free of side effects pass silently; everything else is flagged
// `function-call`, and the known-dangerous ones get the kind of what they really do.
// This module must never treat a schema-qualified name outside pg_catalog as a built-in:
// `public.lower()` is whatever someone created there.

import type { RiskFlag, SqlKind } from "../../../domain/operation.ts";

/**
 * Built-ins without side effects (reading the catalog or computing a value). A call to one
 * of these, unqualified or qualified with pg_catalog, sets no flag and adds no kind.
 */
export const PURE_BUILTIN_FUNCTIONS: ReadonlySet<string> = new Set([
  // aggregates
  "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "json_agg", "jsonb_agg",
  "json_object_agg", "jsonb_object_agg", "bool_and", "bool_or", "every", "bit_and", "bit_or",
  "bit_xor", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr",
  "covar_pop", "covar_samp", "regr_slope", "regr_intercept", "regr_count", "regr_r2",
  "regr_avgx", "regr_avgy", "regr_sxx", "regr_syy", "regr_sxy", "mode", "percentile_cont",
  "percentile_disc", "any_value", "xmlagg", "range_agg", "range_intersect_agg",
  "json_agg_strict", "jsonb_agg_strict", "json_object_agg_strict", "jsonb_object_agg_strict",
  "json_object_agg_unique", "jsonb_object_agg_unique",
  // window functions
  "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
  "first_value", "last_value", "nth_value",
  // a sequence's current value in this session (reads; nextval and setval write)
  "currval", "lastval",
  // conditional and comparison
  "coalesce", "nullif", "greatest", "least", "num_nulls", "num_nonnulls",
  // math
  "abs", "ceil", "ceiling", "floor", "round", "trunc", "sign", "sqrt", "cbrt", "power", "pow",
  "exp", "ln", "log", "log10", "mod", "div", "pi", "degrees", "radians", "sin", "cos", "tan",
  "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "gcd", "lcm", "factorial", "scale",
  "min_scale", "trim_scale", "width_bucket", "random", "random_normal", "numeric",
  // strings
  "lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length",
  "bit_length", "substr", "substring", "position", "strpos", "overlay", "concat", "concat_ws",
  "left", "right", "lpad", "rpad", "ltrim", "rtrim", "btrim", "trim", "replace", "translate",
  "repeat", "reverse", "split_part", "starts_with", "ascii", "chr", "md5", "sha224", "sha256",
  "sha384", "sha512", "encode", "decode", "format", "quote_ident", "quote_literal",
  "quote_nullable", "regexp_match", "regexp_matches", "regexp_replace", "regexp_split_to_array",
  "regexp_split_to_table", "regexp_like", "regexp_count", "regexp_instr", "regexp_substr",
  "string_to_array", "string_to_table", "to_hex", "to_ascii", "convert", "convert_from",
  "convert_to", "normalize", "is_normalized", "unistr", "casefold", "similar_to_escape",
  "like_escape", "pg_collation_for", "text", "crc32", "crc32c", "get_byte", "set_byte",
  "get_bit", "set_bit", "bit_count", "uuid_extract_version", "uuid_extract_timestamp",
  // date and time
  "now", "current_timestamp", "clock_timestamp", "statement_timestamp",
  "transaction_timestamp", "timeofday", "date_trunc", "date_part", "extract", "date_bin",
  "age", "to_char", "to_date", "to_timestamp", "to_number", "make_date", "make_time",
  "make_timestamp", "make_timestamptz", "make_interval", "justify_days", "justify_hours",
  "justify_interval", "isfinite", "timezone", "date_add", "date_subtract",
  // json / jsonb
  "json_build_object", "json_build_array", "jsonb_build_object", "jsonb_build_array",
  "to_json", "to_jsonb", "row_to_json", "array_to_json", "json_object", "jsonb_object",
  "json_array_length", "jsonb_array_length", "json_each", "jsonb_each", "json_each_text",
  "jsonb_each_text", "json_extract_path", "jsonb_extract_path", "json_extract_path_text",
  "jsonb_extract_path_text", "json_object_keys", "jsonb_object_keys", "json_array_elements",
  "jsonb_array_elements", "json_array_elements_text", "jsonb_array_elements_text",
  "json_typeof", "jsonb_typeof", "json_strip_nulls", "jsonb_strip_nulls", "jsonb_set",
  "jsonb_set_lax", "jsonb_insert", "jsonb_pretty", "jsonb_path_exists", "jsonb_path_match",
  "jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first",
  "jsonb_path_exists_tz", "jsonb_path_match_tz", "jsonb_path_query_tz",
  "jsonb_path_query_array_tz", "jsonb_path_query_first_tz", "json_populate_record",
  "jsonb_populate_record", "json_populate_recordset", "jsonb_populate_recordset",
  "json_to_record", "jsonb_to_record", "json_to_recordset", "jsonb_to_recordset",
  "jsonb_concat", "jsonb_contains", "jsonb_exists", "json_scalar", "json_serialize",
  "jsonb_populate_record_valid",
  // arrays and ranges
  "array_length", "array_lower", "array_upper", "array_ndims", "array_dims", "cardinality",
  "array_append", "array_prepend", "array_cat", "array_remove", "array_replace",
  "array_position", "array_positions", "array_to_string", "array_fill", "array_reverse",
  "array_sample", "array_shuffle", "array_sort", "trim_array", "unnest", "generate_series",
  "generate_subscripts", "lower_inc", "upper_inc", "lower_inf", "upper_inf", "isempty",
  "range_merge", "multirange", "int4range", "int8range", "numrange", "tsrange", "tstzrange",
  "daterange",
  // type and catalog information (read-only)
  "pg_typeof", "format_type", "to_regclass", "to_regtype", "to_regproc", "to_regprocedure",
  "to_regnamespace", "to_regrole", "to_regoper", "to_regcollation", "to_regtypemod",
  "obj_description", "col_description", "shobj_description", "pg_get_viewdef",
  "pg_get_functiondef", "pg_get_function_arguments", "pg_get_function_result",
  "pg_get_function_identity_arguments", "pg_get_indexdef", "pg_get_constraintdef",
  "pg_get_triggerdef", "pg_get_ruledef", "pg_get_expr", "pg_get_userbyid",
  "pg_get_serial_sequence", "pg_get_keywords", "pg_get_partkeydef", "pg_get_statisticsobjdef",
  // what psql's \d family and common IDEs call (catalog reads only)
  "pg_get_statisticsobjdef_columns", "pg_get_statisticsobjdef_expressions", "pg_relation_is_publishable",
  "pg_get_partition_constraintdef", "pg_get_function_sqlbody", "pg_get_publication_tables",
  "pg_operator_is_visible", "pg_opclass_is_visible", "pg_opfamily_is_visible", "pg_collation_is_visible",
  "pg_conversion_is_visible", "pg_ts_parser_is_visible", "pg_ts_dict_is_visible", "pg_ts_template_is_visible",
  "pg_ts_config_is_visible", "pg_statistics_obj_is_visible", "pg_relation_is_updatable", "pg_column_is_updatable",
  "pg_get_object_address", "pg_identify_object", "pg_identify_object_as_address", "pg_describe_object",
  "pg_tablespace_location", "pg_options_to_table", "pg_index_column_has_property", "pg_index_has_property",
  "pg_indexam_has_property", "pg_get_replica_identity_index", "pg_partition_tree", "pg_partition_root",
  "pg_partition_ancestors",
  // waiting does not change data; statement_timeout and cancel bound it
  "pg_sleep", "pg_sleep_for",
  "pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible",
  "pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_indexes_size",
  "pg_database_size", "pg_tablespace_size", "pg_size_pretty", "pg_size_bytes",
  "pg_column_size", "pg_relation_filenode", "pg_backend_pid", "pg_postmaster_start_time",
  "pg_conf_load_time", "pg_is_in_recovery", "pg_encoding_to_char", "pg_char_to_encoding",
  "pg_client_encoding", "pg_jit_available", "pg_input_is_valid", "pg_input_error_info",
  "has_table_privilege", "has_column_privilege", "has_any_column_privilege",
  "has_database_privilege", "has_schema_privilege", "has_function_privilege",
  "has_sequence_privilege", "has_type_privilege", "has_language_privilege",
  "has_tablespace_privilege", "has_foreign_data_wrapper_privilege",
  "has_server_privilege", "has_parameter_privilege", "pg_has_role", "row_security_active",
  "version", "current_database", "current_schema", "current_schemas", "current_user",
  "session_user", "current_role", "current_catalog", "inet_client_addr",
  "inet_client_port", "inet_server_addr", "inet_server_port", "current_setting",
  "current_query", "txid_current", "txid_current_if_assigned", "pg_current_xact_id",
  "pg_current_xact_id_if_assigned", "txid_snapshot_xmin", "txid_snapshot_xmax",
  "pg_current_snapshot", "pg_snapshot_xmin", "pg_snapshot_xmax", "pg_xact_status",
  "txid_status", "pg_last_committed_xact", "pg_trigger_depth", "pg_listening_channels",
  "pg_notification_queue_usage", "pg_blocking_pids", "pg_safe_snapshot_blocking_pids",
  "pg_my_temp_schema", "pg_is_other_temp_schema", "pg_numa_available",
  // misc value constructors
  "gen_random_uuid", "uuidv4", "uuidv7", "row", "xmlelement", "xmlforest",
  "xmlconcat", "xmlparse", "xmlserialize", "xmlroot", "xmlpi", "xmlcomment", "xpath",
  "xpath_exists", "xmlexists", "xml_is_well_formed", "xml_is_well_formed_document",
  "xml_is_well_formed_content", "merge_action", "system_user", "to_tsvector", "to_tsquery",
  "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery", "ts_rank", "ts_rank_cd",
  "ts_headline", "setweight", "strip", "tsvector_to_array", "array_to_tsvector",
  "host", "hostmask", "masklen", "netmask", "network", "broadcast", "abbrev", "family",
  "inet_merge", "inet_same_family", "set_masklen",
]);

/** What a known non-pure function really does. */
export interface FunctionEffect {
  kind: SqlKind;
  /** Extra flags besides `function-call`. */
  flags?: readonly RiskFlag[];
}

const ADMIN: FunctionEffect = { kind: "admin" };
const WRITE: FunctionEffect = { kind: "write" };
const SESSION: FunctionEffect = { kind: "session" };
const DYNAMIC: FunctionEffect = { kind: "unknown", flags: ["dynamic-sql"] };

/**
 * Known non-pure functions, matched on the bare name whatever the schema (an extension such
 * as dblink may live in any schema, and a look-alike in another schema is no safer).
 */
export const KNOWN_FUNCTION_EFFECTS: ReadonlyMap<string, FunctionEffect> = new Map<string, FunctionEffect>([
  // other backends, server configuration, WAL, replication, statistics
  ["pg_terminate_backend", ADMIN],
  ["pg_cancel_backend", ADMIN],
  ["pg_reload_conf", ADMIN],
  ["pg_rotate_logfile", ADMIN],
  ["pg_log_backend_memory_contexts", ADMIN],
  ["pg_switch_wal", ADMIN],
  ["pg_create_restore_point", ADMIN],
  ["pg_backup_start", ADMIN],
  ["pg_backup_stop", ADMIN],
  ["pg_promote", ADMIN],
  ["pg_wal_replay_pause", ADMIN],
  ["pg_wal_replay_resume", ADMIN],
  ["pg_create_physical_replication_slot", ADMIN],
  ["pg_create_logical_replication_slot", ADMIN],
  ["pg_drop_replication_slot", ADMIN],
  ["pg_copy_physical_replication_slot", ADMIN],
  ["pg_copy_logical_replication_slot", ADMIN],
  ["pg_replication_slot_advance", ADMIN],
  ["pg_logical_slot_get_changes", ADMIN],
  ["pg_logical_slot_get_binary_changes", ADMIN],
  ["pg_logical_slot_peek_changes", ADMIN],
  ["pg_logical_slot_peek_binary_changes", ADMIN],
  ["pg_logical_emit_message", ADMIN],
  ["pg_replication_origin_create", ADMIN],
  ["pg_replication_origin_drop", ADMIN],
  ["pg_stat_reset", ADMIN],
  ["pg_stat_reset_shared", ADMIN],
  ["pg_stat_reset_single_table_counters", ADMIN],
  ["pg_stat_reset_single_function_counters", ADMIN],
  ["pg_stat_reset_slru", ADMIN],
  ["pg_stat_reset_replication_slot", ADMIN],
  ["pg_stat_reset_subscription_stats", ADMIN],
  ["pg_stat_statements_reset", ADMIN],
  ["pg_import_system_collations", ADMIN],
  ["pg_clear_relation_stats", ADMIN],
  ["pg_restore_relation_stats", ADMIN],
  ["pg_clear_attribute_stats", ADMIN],
  ["pg_restore_attribute_stats", ADMIN],
  // the server's filesystem
  ["pg_read_file", ADMIN],
  ["pg_read_binary_file", ADMIN],
  ["pg_ls_dir", ADMIN],
  ["pg_stat_file", ADMIN],
  ["pg_ls_logdir", ADMIN],
  ["pg_ls_waldir", ADMIN],
  ["pg_ls_tmpdir", ADMIN],
  ["pg_ls_archive_statusdir", ADMIN],
  ["pg_ls_logicalsnapdir", ADMIN],
  ["pg_ls_logicalmapdir", ADMIN],
  ["pg_ls_replslotdir", ADMIN],
  ["pg_ls_summariesdir", ADMIN],
  ["pg_file_write", ADMIN],
  ["pg_file_sync", ADMIN],
  ["pg_file_rename", ADMIN],
  ["pg_file_unlink", ADMIN],
  ["pg_logdir_ls", ADMIN],
  ["lo_import", ADMIN],
  ["lo_export", ADMIN],
  // data changes through functions
  ["nextval", WRITE],
  ["setval", WRITE],
  ["pg_notify", WRITE],
  ["lo_create", WRITE],
  ["lo_creat", WRITE],
  ["lo_unlink", WRITE],
  ["lo_put", WRITE],
  ["lo_from_bytea", WRITE],
  ["lo_truncate", WRITE],
  ["lo_truncate64", WRITE],
  ["lowrite", WRITE],
  ["lo_open", WRITE],
  // session state
  ["set_config", SESSION],
  ["pg_advisory_lock", SESSION],
  ["pg_advisory_lock_shared", SESSION],
  ["pg_advisory_unlock", SESSION],
  ["pg_advisory_unlock_shared", SESSION],
  ["pg_advisory_unlock_all", SESSION],
  ["pg_advisory_xact_lock", SESSION],
  ["pg_advisory_xact_lock_shared", SESSION],
  ["pg_try_advisory_lock", SESSION],
  ["pg_try_advisory_lock_shared", SESSION],
  ["pg_try_advisory_xact_lock", SESSION],
  ["pg_try_advisory_xact_lock_shared", SESSION],
  ["setseed", SESSION],
  // run SQL given as text, or read tables named in a string: what runs is invisible here
  ["dblink", DYNAMIC],
  ["dblink_exec", DYNAMIC],
  ["dblink_send_query", DYNAMIC],
  ["dblink_open", DYNAMIC],
  ["dblink_fetch", DYNAMIC],
  ["dblink_connect", { kind: "unknown" }],
  ["dblink_connect_u", { kind: "unknown" }],
  ["query_to_xml", DYNAMIC],
  ["query_to_xmlschema", DYNAMIC],
  ["query_to_xml_and_xmlschema", DYNAMIC],
  ["cursor_to_xml", DYNAMIC],
  ["table_to_xml", DYNAMIC],
  ["table_to_xmlschema", DYNAMIC],
  ["table_to_xml_and_xmlschema", DYNAMIC],
  ["schema_to_xml", DYNAMIC],
  ["schema_to_xmlschema", DYNAMIC],
  ["schema_to_xml_and_xmlschema", DYNAMIC],
  ["database_to_xml", DYNAMIC],
  ["database_to_xmlschema", DYNAMIC],
  ["database_to_xml_and_xmlschema", DYNAMIC],
  ["ts_stat", DYNAMIC],
]);

/** The effect of calling `nameParts` (as written, e.g. ["pg_catalog", "count"]). */
export function functionEffect(nameParts: readonly string[]): FunctionEffect | "pure" {
  const bare = nameParts[nameParts.length - 1] ?? "";
  const known = KNOWN_FUNCTION_EFFECTS.get(bare);
  if (known) return known;
  const builtinSchema = nameParts.length === 1 || (nameParts.length === 2 && nameParts[0] === "pg_catalog");
  if (builtinSchema && PURE_BUILTIN_FUNCTIONS.has(bare)) return "pure";
  return { kind: "unknown" };
}
