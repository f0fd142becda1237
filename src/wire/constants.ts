// Numbers fixed by wire-spec.md: the preface, frame types, flags, settings and their defaults and limits.

/** "DFSWIRE" followed by the major version byte (spec §2). */
export const PREFACE_MAGIC = Buffer.from('DFSWIRE', 'latin1');
export const PROTOCOL_MAJOR_VERSION = 1;
export const PREFACE_LENGTH = PREFACE_MAGIC.length + 1;

export const FRAME_HEADER_LENGTH = 9;
/** The 24-bit length field caps every payload, whatever the settings say. */
export const MAX_FRAME_SIZE_CEILING = 0xff_ffff;
export const MAX_STREAM_ID = 0x7fff_ffff;
export const MAX_WINDOW = 0x7fff_ffff;

export const FrameType = {
  HELLO: 0x00,
  OPEN: 0x01,
  REPLY: 0x02,
  DATA: 0x03,
  CREDIT: 0x04,
  RESET: 0x05,
  PING: 0x06,
  PONG: 0x07,
  GOAWAY: 0x08,
} as const;
export type FrameTypeName = keyof typeof FrameType;

const typeNames = new Map<number, FrameTypeName>(
  (Object.keys(FrameType) as FrameTypeName[]).map((name) => [FrameType[name], name]),
);
export function frameTypeName(type: number): string {
  return typeNames.get(type) ?? `UNKNOWN(0x${type.toString(16).padStart(2, '0')})`;
}
export function isKnownFrameType(type: number): boolean {
  return typeNames.has(type);
}
/** Grease frame types (spec §3.3): never meaningful, always skipped; peers send them to keep the skip path alive. */
export function isGreaseFrameType(type: number): boolean {
  return type >= 0xe0 && type <= 0xef;
}

export const Flag = {
  /** On OPEN, REPLY and DATA: the sender will send nothing more on this stream. */
  END_STREAM: 0x01,
} as const;
/** Flag bits 0x80-0xF0 are critical: a receiver that does not know a set critical bit must fail (spec §3.2). */
export const CRITICAL_FLAGS_MASK = 0xf0;

/** Flags each frame type defines; every other bit below 0x10 is ignored, every unknown bit at 0x10 or above is fatal. */
export const DEFINED_FLAGS: Readonly<Record<number, number>> = {
  [FrameType.HELLO]: 0,
  [FrameType.OPEN]: Flag.END_STREAM,
  [FrameType.REPLY]: Flag.END_STREAM,
  [FrameType.DATA]: Flag.END_STREAM,
  [FrameType.CREDIT]: 0,
  [FrameType.RESET]: 0,
  [FrameType.PING]: 0,
  [FrameType.PONG]: 0,
  [FrameType.GOAWAY]: 0,
};

export const Setting = {
  MAX_FRAME_SIZE: 0x0001,
  STREAM_WINDOW: 0x0002,
  CONNECTION_WINDOW: 0x0003,
  MAX_CONCURRENT_STREAMS: 0x0004,
  MAX_HEADER_SIZE: 0x0005,
  IDLE_TIMEOUT_MS: 0x0006,
} as const;
export type SettingName = keyof typeof Setting;

export interface Settings {
  /** Largest frame payload this side accepts. */
  maxFrameSize: number;
  /** Initial credit for each stream's DATA towards this side. */
  streamWindow: number;
  /** Initial credit for all DATA on the connection towards this side. */
  connectionWindow: number;
  /** Streams the peer may have open towards this side at once. */
  maxConcurrentStreams: number;
  /** Largest OPEN or REPLY payload this side accepts. */
  maxHeaderSize: number;
  /** This side closes a connection silent for this long; 0 disables. The lower non-zero value of both sides applies. */
  idleTimeoutMs: number;
}

export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  maxFrameSize: 64 * 1024,
  streamWindow: 1024 * 1024,
  connectionWindow: 16 * 1024 * 1024,
  maxConcurrentStreams: 128,
  maxHeaderSize: 16 * 1024,
  idleTimeoutMs: 30_000,
});

/** Allowed range of each setting's value; a HELLO outside it is a PROTOCOL_ERROR. */
export const SETTING_RANGES: Readonly<Record<keyof Settings, readonly [number, number]>> = {
  maxFrameSize: [1024, MAX_FRAME_SIZE_CEILING],
  streamWindow: [1, MAX_WINDOW],
  connectionWindow: [1, MAX_WINDOW],
  maxConcurrentStreams: [0, MAX_STREAM_ID],
  maxHeaderSize: [64, MAX_FRAME_SIZE_CEILING],
  idleTimeoutMs: [0, 0xffff_ffff],
};

export const SETTING_KEYS: Readonly<Record<number, keyof Settings>> = {
  [Setting.MAX_FRAME_SIZE]: 'maxFrameSize',
  [Setting.STREAM_WINDOW]: 'streamWindow',
  [Setting.CONNECTION_WINDOW]: 'connectionWindow',
  [Setting.MAX_CONCURRENT_STREAMS]: 'maxConcurrentStreams',
  [Setting.MAX_HEADER_SIZE]: 'maxHeaderSize',
  [Setting.IDLE_TIMEOUT_MS]: 'idleTimeoutMs',
};

/** HELLO field tags at or above this carry extension bytes (authentication, agent name), not u32 settings. */
export const HELLO_EXTENSION_BASE = 0x8000;
export const HelloExtension = {
  /** UTF-8 name and version of the implementation, for logs only. */
  AGENT: 0x8001,
} as const;

/** Longest debug or reason text carried in RESET and GOAWAY. */
export const MAX_REASON_LENGTH = 1024;
