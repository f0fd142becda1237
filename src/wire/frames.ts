// Frame encoders and payload parsers (spec §3, §5). Pure: buffers in, buffers or values out.

import {
  CRITICAL_FLAGS_MASK, DEFAULT_SETTINGS, DEFINED_FLAGS, FRAME_HEADER_LENGTH, FrameType, HELLO_EXTENSION_BASE,
  MAX_FRAME_SIZE_CEILING, MAX_REASON_LENGTH, MAX_STREAM_ID, MAX_WINDOW, PREFACE_LENGTH, PREFACE_MAGIC,
  PROTOCOL_MAJOR_VERSION, SETTING_KEYS, SETTING_RANGES, frameTypeName, isKnownFrameType,
  type Settings,
} from './constants.js';
import { WireError, errorCodeFromValue, errorValue, type ErrorCode } from './errors.js';
import { decodeFields, encodeFields } from './fields.js';

/** A frame as it comes off the wire: the header decoded, the payload still bytes. */
export interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export function encodePreface(version = PROTOCOL_MAJOR_VERSION): Buffer {
  const out = Buffer.allocUnsafe(PREFACE_LENGTH);
  PREFACE_MAGIC.copy(out, 0);
  out[PREFACE_MAGIC.length] = version;
  return out;
}

/** The 9-byte header alone, so DATA payloads can be written after it without a copy. */
export function encodeFrameHeader(type: number, flags: number, streamId: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  writeFrameHeader(out, 0, type, flags, streamId, length);
  return out;
}

/** Writes the 9-byte header into `out` at `at`, so frames can be gathered into one buffer. */
export function writeFrameHeader(out: Buffer, at: number, type: number, flags: number, streamId: number, length: number): void {
  if (length > MAX_FRAME_SIZE_CEILING) throw new RangeError(`frame payload of ${length} bytes exceeds 2^24-1`);
  out[at] = length >>> 16;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out.writeUInt32BE(streamId & MAX_STREAM_ID, at + 5);
}

export function encodeFrame(type: number, flags: number, streamId: number, payload: Buffer = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + payload.length);
  writeFrameHeader(out, 0, type, flags, streamId, payload.length);
  payload.copy(out, FRAME_HEADER_LENGTH);
  return out;
}

const EMPTY = Buffer.alloc(0);

// ---- HELLO ----

export interface Hello {
  /** Only the settings present in the frame; absent ones take their defaults. */
  settings: Partial<Settings>;
  /** Extension fields (tags >= 0x8000), for authentication and agent names. */
  extensions: Map<number, Buffer>;
}

export function encodeHello(settings: Partial<Settings>, extensions: Iterable<readonly [number, Buffer]> = []): Buffer {
  const fields: [number, Buffer][] = [];
  for (const [idText, key] of Object.entries(SETTING_KEYS)) {
    const value = settings[key];
    if (value === undefined) continue;
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(value);
    fields.push([Number(idText), b]);
  }
  for (const [tag, value] of extensions) {
    if (tag < HELLO_EXTENSION_BASE) throw new RangeError(`HELLO extension tag 0x${tag.toString(16)} is below 0x8000`);
    fields.push([tag, value]);
  }
  return encodeFrame(FrameType.HELLO, 0, 0, encodeFields(fields));
}

export function parseHello(payload: Buffer): Hello {
  const fields = decodeFields(payload);
  const settings: Partial<Settings> = {};
  const extensions = new Map<number, Buffer>();
  for (const [tag, value] of fields) {
    if (tag >= HELLO_EXTENSION_BASE) {
      extensions.set(tag, value);
      continue;
    }
    const key = SETTING_KEYS[tag];
    if (value.length !== 4) {
      throw new WireError('PROTOCOL_ERROR', `setting 0x${tag.toString(16).padStart(4, '0')} has ${value.length} bytes, settings are 4`);
    }
    if (key === undefined) continue; // unknown settings are ignored (spec §6)
    const v = value.readUInt32BE(0);
    const [lo, hi] = SETTING_RANGES[key];
    if (v < lo || v > hi) throw new WireError('PROTOCOL_ERROR', `setting ${key} = ${v} is outside ${lo}..${hi}`);
    settings[key] = v;
  }
  return { settings, extensions };
}

export function resolveSettings(partial: Partial<Settings>): Settings {
  return { ...DEFAULT_SETTINGS, ...partial };
}

// ---- OPEN and REPLY ----

export interface Open {
  op: number;
  opVersion: number;
  /** Encoded header fields; the operation's schema decodes them. */
  header: Buffer;
}

export function encodeOpen(streamId: number, op: number, opVersion: number, header: Buffer, endStream: boolean): Buffer {
  // One buffer for the whole frame: every request makes one.
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + 4 + header.length);
  writeFrameHeader(out, 0, FrameType.OPEN, endStream ? 0x01 : 0, streamId, 4 + header.length);
  out.writeUInt16BE(op, FRAME_HEADER_LENGTH);
  out.writeUInt16BE(opVersion, FRAME_HEADER_LENGTH + 2);
  header.copy(out, FRAME_HEADER_LENGTH + 4);
  return out;
}

export function parseOpen(payload: Buffer, streamId: number): Open {
  if (payload.length < 4) throw new WireError('FRAME_SIZE_ERROR', `OPEN payload of ${payload.length} bytes is shorter than 4`, streamId);
  return { op: payload.readUInt16BE(0), opVersion: payload.readUInt16BE(2), header: payload.subarray(4) };
}

export function encodeReply(streamId: number, header: Buffer, endStream: boolean): Buffer {
  return encodeFrame(FrameType.REPLY, endStream ? 0x01 : 0, streamId, header);
}

// ---- DATA ----

export function encodeData(streamId: number, data: Buffer, endStream: boolean): Buffer {
  return encodeFrame(FrameType.DATA, endStream ? 0x01 : 0, streamId, data);
}

// ---- CREDIT ----

export function encodeCredit(streamId: number, increment: number): Buffer {
  if (!Number.isInteger(increment) || increment < 1 || increment > MAX_WINDOW) {
    throw new RangeError(`credit increment ${increment} is outside 1..2^31-1`);
  }
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(increment);
  return encodeFrame(FrameType.CREDIT, 0, streamId, payload);
}

export function parseCredit(payload: Buffer, streamId: number): number {
  const increment = payload.readUInt32BE(0);
  if (increment === 0 || increment > MAX_WINDOW) {
    throw new WireError('PROTOCOL_ERROR', `CREDIT increment ${increment} on stream ${streamId} is outside 1..2^31-1`);
  }
  return increment;
}

// ---- RESET ----

export interface Reset {
  code: ErrorCode;
  /** The raw code value, kept so tools can show codes this implementation does not know. */
  codeValue: number;
  /** DATA payload bytes the sender of RESET sent on the stream, in total. */
  finalSize: number;
  reason: string;
}

/** `maxReason` lets the sender keep the frame within a peer's MAX_FRAME_SIZE (spec §5.6). */
export function encodeReset(streamId: number, code: ErrorCode | number, finalSize: number, reason = '', maxReason = MAX_REASON_LENGTH): Buffer {
  const text = truncateUtf8(reason, Math.min(maxReason, MAX_REASON_LENGTH));
  const payload = Buffer.allocUnsafe(14 + text.length);
  payload.writeUInt32BE(typeof code === 'number' ? code : errorValue(code), 0);
  payload.writeBigUInt64BE(BigInt(finalSize), 4);
  payload.writeUInt16BE(text.length, 12);
  text.copy(payload, 14);
  return encodeFrame(FrameType.RESET, 0, streamId, payload);
}

export function parseReset(payload: Buffer, streamId: number): Reset {
  const codeValue = payload.readUInt32BE(0);
  const finalSize = payload.readBigUInt64BE(4);
  const reasonLength = payload.readUInt16BE(12);
  if (reasonLength > payload.length - 14 || reasonLength > MAX_REASON_LENGTH) {
    throw new WireError('FRAME_SIZE_ERROR', `RESET on stream ${streamId} declares a ${reasonLength}-byte reason in ${payload.length - 14} bytes`);
  }
  if (finalSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new WireError('PROTOCOL_ERROR', `RESET on stream ${streamId} has final size ${finalSize} above 2^53-1`);
  }
  return {
    code: errorCodeFromValue(codeValue),
    codeValue,
    finalSize: Number(finalSize),
    reason: payload.toString('utf8', 14, 14 + reasonLength),
  };
}

// ---- PING and PONG ----

export function encodePing(opaque: Buffer): Buffer {
  return encodeFrame(FrameType.PING, 0, 0, checkOpaque(opaque));
}
export function encodePong(opaque: Buffer): Buffer {
  return encodeFrame(FrameType.PONG, 0, 0, checkOpaque(opaque));
}
function checkOpaque(opaque: Buffer): Buffer {
  if (opaque.length !== 8) throw new RangeError(`PING data must be 8 bytes, got ${opaque.length}`);
  return opaque;
}

// ---- GOAWAY ----

export interface GoAway {
  /** Highest stream id the sender processed or may still process; streams above it were never processed. */
  lastStreamId: number;
  code: ErrorCode;
  codeValue: number;
  reason: string;
}

export function encodeGoAway(lastStreamId: number, code: ErrorCode | number, reason = '', maxReason = MAX_REASON_LENGTH): Buffer {
  const text = truncateUtf8(reason, Math.min(maxReason, MAX_REASON_LENGTH));
  const payload = Buffer.allocUnsafe(10 + text.length);
  payload.writeUInt32BE(lastStreamId & MAX_STREAM_ID, 0);
  payload.writeUInt32BE(typeof code === 'number' ? code : errorValue(code), 4);
  payload.writeUInt16BE(text.length, 8);
  text.copy(payload, 10);
  return encodeFrame(FrameType.GOAWAY, 0, 0, payload);
}

export function parseGoAway(payload: Buffer): GoAway {
  const lastStreamId = payload.readUInt32BE(0) & MAX_STREAM_ID;
  const codeValue = payload.readUInt32BE(4);
  const reasonLength = payload.readUInt16BE(8);
  if (reasonLength > payload.length - 10 || reasonLength > MAX_REASON_LENGTH) {
    throw new WireError('FRAME_SIZE_ERROR', `GOAWAY declares a ${reasonLength}-byte reason in ${payload.length - 10} bytes`);
  }
  return { lastStreamId, code: errorCodeFromValue(codeValue), codeValue, reason: payload.toString('utf8', 10, 10 + reasonLength) };
}

function truncateUtf8(text: string, max: number): Buffer {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= max) return buf;
  // Cut on a character boundary so the reason stays valid UTF-8.
  let end = max;
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return buf.subarray(0, end);
}

// ---- Stateless checks every frame passes before its payload is looked at (spec §3.4) ----

/** Payload sizes: exact for fixed frames, a minimum for the rest. */
const EXACT_SIZE: Readonly<Record<number, number>> = { [FrameType.CREDIT]: 4, [FrameType.PING]: 8, [FrameType.PONG]: 8 };
const MIN_SIZE: Readonly<Record<number, number>> = { [FrameType.OPEN]: 4, [FrameType.RESET]: 14, [FrameType.GOAWAY]: 10 };
/** Frames that belong to the connection and must carry stream id 0. */
const CONNECTION_FRAMES = new Set<number>([FrameType.HELLO, FrameType.PING, FrameType.PONG, FrameType.GOAWAY]);
/** Frames that belong to a stream and must carry a non-zero id. CREDIT may be either. */
const STREAM_FRAMES = new Set<number>([FrameType.OPEN, FrameType.REPLY, FrameType.DATA, FrameType.RESET]);

/** Throws the WireError the spec prescribes when a header is invalid for its type; unknown types pass. */
export function checkFrameHeader(type: number, flags: number, streamId: number, length: number): void {
  if (!isKnownFrameType(type)) {
    if (flags & CRITICAL_FLAGS_MASK) {
      throw new WireError('PROTOCOL_ERROR', `unknown frame type 0x${type.toString(16)} carries critical flags 0x${flags.toString(16)}`);
    }
    return;
  }
  const name = frameTypeName(type);
  const unknownCritical = flags & CRITICAL_FLAGS_MASK & ~DEFINED_FLAGS[type]!;
  if (unknownCritical) {
    throw new WireError('PROTOCOL_ERROR', `${name} carries unknown critical flags 0x${unknownCritical.toString(16)}`);
  }
  if (CONNECTION_FRAMES.has(type) && streamId !== 0) {
    throw new WireError('PROTOCOL_ERROR', `${name} must be sent on stream 0, got stream ${streamId}`);
  }
  if (STREAM_FRAMES.has(type) && streamId === 0) {
    throw new WireError('PROTOCOL_ERROR', `${name} must be sent on a stream, got stream 0`);
  }
  const exact = EXACT_SIZE[type];
  if (exact !== undefined && length !== exact) {
    throw new WireError('FRAME_SIZE_ERROR', `${name} payload must be ${exact} bytes, got ${length}`);
  }
  const min = MIN_SIZE[type];
  if (min !== undefined && length < min) {
    throw new WireError('FRAME_SIZE_ERROR', `${name} payload must be at least ${min} bytes, got ${length}`);
  }
}
