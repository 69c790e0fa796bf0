// The one error the PostgreSQL codec throws. It exists so an engine can tell "these bytes are not
// valid protocol" (answer with an ErrorResponse and close: fail closed) from a bug in the gateway.
// Decoders must never let a RangeError, TypeError or any other exception escape for bad input:
// every malformed frame becomes a ProtocolError with a stable `code`.

export type ProtocolErrorCode =
  // startup phase (untyped packets)
  | "PG_STARTUP_LENGTH_INVALID" // startup packet length outside 8..10004 (PostgreSQL's limit)
  | "PG_STARTUP_LAYOUT_INVALID" // SSL/GSSENC request of the wrong size, parameters not terminated
  | "PG_PROTOCOL_UNSUPPORTED" // protocol version other than 3.x and not a known request code
  | "PG_CANCEL_KEY_INVALID" // CancelRequest secret key not 4..256 bytes
  | "PG_NEGOTIATION_REPEATED" // a second SSLRequest or GSSENCRequest
  | "PG_DATA_AFTER_ENCRYPTION_REQUEST" // bytes pipelined after SSLRequest/GSSENCRequest (CVE-2021-23214)
  | "PG_DATA_AFTER_END" // bytes after CancelRequest or Terminate
  // typed phase (framing)
  | "PG_MESSAGE_TYPE_UNKNOWN"
  | "PG_MESSAGE_LENGTH_INVALID" // length field < 4
  | "PG_MESSAGE_TOO_LARGE" // length field above the limit for this message type
  // message contents
  | "PG_MESSAGE_TRUNCATED" // a field or a count runs past the end of the frame
  | "PG_STRING_UNTERMINATED" // a C string without its NUL inside the frame
  | "PG_MESSAGE_TRAILING_BYTES" // bytes left over after the last field
  | "PG_FIELD_INVALID" // a field with a value the protocol does not allow
  | "PG_INVALID_UTF8" // only with FrontendDecoder({ strictUtf8: true })
  // server replies read by the gateway as a client
  | "PG_SSL_RESPONSE_INVALID"
  // writers (the gateway's own input to a writer is unusable)
  | "PG_WRITE_INVALID"
  // SCRAM-SHA-256 / password exchange with a server
  | "PG_SCRAM_MESSAGE_INVALID"
  | "PG_SCRAM_NONCE_MISMATCH"
  | "PG_SCRAM_ITERATIONS_INVALID"
  | "PG_SCRAM_SERVER_ERROR"
  | "PG_SCRAM_SERVER_SIGNATURE_INVALID";

export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;
  /**
   * SQLSTATE an engine should report to a PostgreSQL client: 08P01 (protocol_violation); 28000
   * (invalid_authorization_specification) for a failed SCRAM exchange; XX000 (internal_error)
   * for PG_WRITE_INVALID, which means the gateway itself asked a writer for an impossible frame.
   */
  readonly sqlstate: string;
  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    this.sqlstate = code.startsWith("PG_SCRAM_") ? "28000" : code === "PG_WRITE_INVALID" ? "XX000" : "08P01";
  }
}

export function isProtocolError(e: unknown): e is ProtocolError {
  return e instanceof ProtocolError;
}
