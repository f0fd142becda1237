// The error registry of wire-spec.md §8, and the one error class every dfs layer throws.
// Codes are stable numbers on the wire and stable names in code; callers branch on `code`, never on text.

export type ErrorScope = 'connection' | 'stream' | 'both';

export interface ErrorInfo {
  readonly value: number;
  readonly scope: ErrorScope;
  /** True when the request provably was not processed, or repeating it is harmless. */
  readonly retriable: boolean;
}

/** Every code dfs defines. Values 0x0000-0x00FF are transport codes, 0x0100-0x0FFF application codes. */
export const ERRORS = {
  NO_ERROR: { value: 0x00, scope: 'both', retriable: false },
  PROTOCOL_ERROR: { value: 0x01, scope: 'both', retriable: false },
  INTERNAL_ERROR: { value: 0x02, scope: 'both', retriable: false },
  FLOW_CONTROL_ERROR: { value: 0x03, scope: 'both', retriable: false },
  FRAME_SIZE_ERROR: { value: 0x04, scope: 'both', retriable: false },
  STREAM_CLOSED: { value: 0x05, scope: 'stream', retriable: false },
  REFUSED_STREAM: { value: 0x06, scope: 'stream', retriable: true },
  CANCEL: { value: 0x07, scope: 'stream', retriable: false },
  VERSION_MISMATCH: { value: 0x08, scope: 'connection', retriable: false },
  BAD_PREFACE: { value: 0x09, scope: 'connection', retriable: false },
  RATE_LIMITED: { value: 0x0a, scope: 'both', retriable: false },
  HEADER_TOO_LARGE: { value: 0x0b, scope: 'stream', retriable: false },
  IDLE_TIMEOUT: { value: 0x0c, scope: 'connection', retriable: true },
  DEADLINE_EXCEEDED: { value: 0x0d, scope: 'stream', retriable: false },
  UNKNOWN_OPERATION: { value: 0x0e, scope: 'stream', retriable: false },
  UNSUPPORTED_OP_VERSION: { value: 0x0f, scope: 'stream', retriable: false },
  CONNECTION_CLOSED: { value: 0x10, scope: 'connection', retriable: false },
  // Application codes (dfs operations).
  NOT_FOUND: { value: 0x100, scope: 'stream', retriable: false },
  ALREADY_EXISTS: { value: 0x101, scope: 'stream', retriable: false },
  NOT_A_DIRECTORY: { value: 0x102, scope: 'stream', retriable: false },
  IS_A_DIRECTORY: { value: 0x103, scope: 'stream', retriable: false },
  DIRECTORY_NOT_EMPTY: { value: 0x104, scope: 'stream', retriable: false },
  INVALID_ARGUMENT: { value: 0x105, scope: 'stream', retriable: false },
  NO_SPACE: { value: 0x106, scope: 'stream', retriable: true },
  CHECKSUM_MISMATCH: { value: 0x107, scope: 'stream', retriable: true },
  NOT_ENOUGH_KEEPERS: { value: 0x108, scope: 'stream', retriable: true },
  IO_ERROR: { value: 0x109, scope: 'stream', retriable: true },
  PIPELINE_FAILED: { value: 0x10a, scope: 'stream', retriable: true },
  UNAVAILABLE: { value: 0x10b, scope: 'stream', retriable: true },
} as const satisfies Record<string, ErrorInfo>;

export type ErrorCode = keyof typeof ERRORS;

const byValue = new Map<number, ErrorCode>(
  (Object.keys(ERRORS) as ErrorCode[]).map((name) => [ERRORS[name].value, name]),
);

/** The name for a wire value; unknown values are treated as INTERNAL_ERROR, as the spec requires. */
export function errorCodeFromValue(value: number): ErrorCode {
  return byValue.get(value) ?? 'INTERNAL_ERROR';
}

export function isKnownErrorValue(value: number): boolean {
  return byValue.has(value);
}

export function errorValue(code: ErrorCode): number {
  return ERRORS[code].value;
}

/** The base of every error dfs raises: a registry code, a message for people, and whether a retry is safe. */
export class DfsError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retriable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DfsError';
    this.code = code;
    this.retriable = options?.retriable ?? ERRORS[code].retriable;
  }
}

/** A violation of the wire format found by the pure codec; the transport turns it into RESET or GOAWAY. */
export class WireError extends DfsError {
  /** Stream the violation belongs to, or 0 when the whole connection is at fault. */
  readonly streamId: number;
  constructor(code: ErrorCode, message: string, streamId = 0) {
    super(code, message);
    this.name = 'WireError';
    this.streamId = streamId;
  }
}
