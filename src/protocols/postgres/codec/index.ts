// The public face of the PostgreSQL v3 codec: decoders for both directions, writers for the
// messages the gateway originates, and the password/SCRAM client. Engines import from here only.
// Nothing behind this module performs I/O, and nothing here may ever depend on an engine.

export type { ProtocolErrorCode } from "./errors.ts";
export { isProtocolError, ProtocolError } from "./errors.ts";

export type {
  AuthResponseMessage,
  BindMessage,
  CancelRequestMessage,
  CloseMessage,
  CopyDataMessage,
  CopyDoneMessage,
  CopyFailMessage,
  DescribeMessage,
  ExecuteMessage,
  FlushMessage,
  FrontendDecoderOptions,
  FrontendMessage,
  FrontendMessageType,
  FrontendPhase,
  FunctionCallMessage,
  GSSENCRequestMessage,
  ParseMessage,
  QueryMessage,
  SASLInitialResponse,
  SSLRequestMessage,
  StartupMessage,
  StartupOptions,
  StartupPhaseMessage,
  SyncMessage,
  TerminateMessage,
  TypedFrontendMessage,
} from "./frontend.ts";
export {
  AUTH_MESSAGE_LIMIT,
  bindParamFormat,
  CANCEL_REQUEST_CODE,
  DEFAULT_MAX_MESSAGE_BYTES,
  FrontendDecoder,
  GSSENC_REQUEST_CODE,
  LARGE_MESSAGE_LIMIT,
  MAX_CANCEL_KEY_LENGTH,
  MAX_STARTUP_PACKET_LENGTH,
  PROTOCOL_3_0,
  PROTOCOL_3_2,
  parsePassword,
  parseSASLInitialResponse,
  parseSASLResponse,
  parseStartupOptions,
  SMALL_MESSAGE_LIMIT,
  SSL_REQUEST_CODE,
  splitStartupOptions,
  startsWithTlsHandshake,
} from "./frontend.ts";

export type { NoticeFields, RowFieldInput, TransactionStatus } from "./backend.ts";
/** Writers for server→client messages: backend.errorResponse({...}), backend.readyForQuery("I")… */
export * as backend from "./backend.ts";
/** Writers for the client→server messages the gateway originates: frontendWriter.startupMessage({...})… */
export * as frontendWriter from "./frontend-writer.ts";
export type { StartupMessageOptions } from "./frontend-writer.ts";

export type { Authentication, BackendFrame, BackendFramerOptions, BackendTypeName, RowField } from "./backend-reader.ts";
export {
  BackendFramer,
  BackendType,
  backendTypeName,
  commandTagRows,
  DEFAULT_MAX_BACKEND_MESSAGE_BYTES,
  parseAuthentication,
  parseBackendKeyData,
  parseCommandComplete,
  parseCopyResponse,
  parseDataRow,
  parseNegotiateProtocolVersion,
  parseNoticeFields,
  parseParameterDescription,
  parseParameterStatus,
  parseReadyForQuery,
  parseRowDescription,
} from "./backend-reader.ts";

export type { ScramClientFinal, ScramClientFirst, ScramClientFirstOptions, ScramServerFirst } from "./scram.ts";
export {
  DEFAULT_MAX_SCRAM_ITERATIONS,
  md5Password,
  parseScramServerFirst,
  SCRAM_SHA_256,
  ScramSha256Client,
  saslprep,
  scramClientFinal,
  scramClientFirst,
  verifyScramServerFinal,
} from "./scram.ts";
