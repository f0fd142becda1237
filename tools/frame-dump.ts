// Describes a captured dfs wire byte stream for people: one event per preface, frame, violation or truncation,
// rendered as a text line or a JSON object. Pure: bytes in, values out; the CLI in decode-frames.ts does the IO.

import {
  DEFINED_FLAGS, FRAME_HEADER_LENGTH, Flag, FrameDecoder, FrameType, HelloExtension, HELLO_EXTENSION_BASE,
  MAX_STREAM_ID, PREFACE_LENGTH, PROTOCOL_MAJOR_VERSION, SETTING_KEYS, Setting, WireError, decodeFields,
  frameTypeName, isGreaseFrameType, isKnownErrorValue, isKnownFrameType, parseCredit, parseGoAway, parseHello,
  parseOpen, parseReset, type ErrorCode, type RawFrame,
} from '../src/wire/index.js';

export interface DumpOptions {
  /** Whether the capture starts with the 8-byte preface (true for a capture of a whole connection). */
  expectPreface: boolean;
  /** Largest payload accepted, as the receiving side would have advertised it. */
  maxFrameSize: number;
}

/** Bytes of a DATA payload shown in the preview. */
export const DATA_PREVIEW_BYTES = 16;
/** Bytes of a header field or extension value shown in the preview. */
export const FIELD_PREVIEW_BYTES = 48;

/** A header field, HELLO extension or unknown setting value, previewed as text when it reads as text. */
export interface FieldPreview {
  tag: number;
  /** Registry name when the tag is known in its context (HELLO extensions), else null. */
  name: string | null;
  size: number;
  /** Hex of the first FIELD_PREVIEW_BYTES bytes. */
  hex: string;
  /** The whole value as UTF-8 when it is valid and printable, cut to FIELD_PREVIEW_BYTES characters; else null. */
  text: string | null;
  truncated: boolean;
}

export interface SettingEntry {
  id: number;
  /** Spec name (MAX_FRAME_SIZE, ...), or null for a setting this implementation does not know and ignores. */
  name: string | null;
  /** The u32 value. Unknown settings are 4 bytes too, or parseHello would have rejected the frame. */
  value: number;
}

export type PayloadDescription =
  | { kind: 'hello'; settings: SettingEntry[]; extensions: FieldPreview[] }
  | { kind: 'open'; op: number; opVersion: number; fields: FieldPreview[] }
  | { kind: 'reply'; fields: FieldPreview[] }
  | { kind: 'data'; size: number; hex: string; ascii: string; truncated: boolean }
  | { kind: 'credit'; increment: number }
  | { kind: 'reset'; code: ErrorCode; codeValue: number; knownCode: boolean; finalSize: number; reason: string }
  | { kind: 'ping' | 'pong'; opaque: string }
  | { kind: 'goaway'; lastStreamId: number; code: ErrorCode; codeValue: number; knownCode: boolean; reason: string }
  | { kind: 'skipped'; grease: boolean; size: number };

export interface PrefaceEvent {
  kind: 'preface';
  offset: 0;
  version: number;
}

export interface FrameEvent {
  kind: 'frame';
  offset: number;
  type: string;
  typeValue: number;
  flags: number;
  /** Names of the flags this frame type defines, then every other set bit as hex. */
  flagNames: string[];
  streamId: number;
  length: number;
  payload: PayloadDescription;
}

export interface ErrorEvent {
  kind: 'error';
  /** Where the offending preface or frame starts. */
  offset: number;
  /** 'preface', or the frame type name when the header could be read. */
  at: string;
  streamId: number | null;
  code: ErrorCode;
  message: string;
}

export interface TruncatedEvent {
  kind: 'truncated';
  /** Where the incomplete preface or frame starts. */
  offset: number;
  part: 'preface' | 'header' | 'payload';
  /** Frame type name once the type byte is present, else null. */
  frameType: string | null;
  streamId: number | null;
  have: number;
  need: number;
  missing: number;
}

export type DumpEvent = PrefaceEvent | FrameEvent | ErrorEvent | TruncatedEvent;

const SETTING_NAMES = new Map<number, string>(Object.entries(Setting).map(([name, id]) => [id, name]));
const EXTENSION_NAMES = new Map<number, string>(Object.entries(HelloExtension).map(([name, tag]) => [tag, name]));
const NO_FIELDS: FieldPreview[] = [];

/**
 * Feeds a capture through the real FrameDecoder and turns what it yields into events. Incremental: push chunks
 * as they arrive, then call end(). The first violation ends the dump, as it would end the connection.
 */
export class FrameDumper {
  private readonly decoder: FrameDecoder;
  private readonly expectPreface: boolean;
  private prefaceDone: boolean;
  private received = 0;
  /** Offset of the preface or frame not yet complete: where an error or a truncation is reported. */
  private frameStart = 0;
  /** Chunks that still hold bytes at or after frameStart, with their offsets, to read a failing header back. */
  private recent: { start: number; bytes: Buffer }[] = [];
  private payloadError: ErrorEvent | null = null;
  private finished = false;

  constructor(options: DumpOptions) {
    this.expectPreface = options.expectPreface;
    this.prefaceDone = !options.expectPreface;
    this.decoder = new FrameDecoder({ maxFrameSize: options.maxFrameSize, expectPreface: options.expectPreface });
  }

  /** True once a violation was reported or end() was called; later input is ignored. */
  get done(): boolean {
    return this.finished;
  }

  push(chunk: Buffer): DumpEvent[] {
    if (this.finished) return [];
    const events: DumpEvent[] = [];
    this.recent.push({ start: this.received, bytes: chunk });
    this.received += chunk.length;
    try {
      this.decoder.push(chunk, (frame) => {
        this.notePreface(events);
        const offset = this.frameStart;
        this.frameStart = this.decoder.bytesConsumed;
        try {
          events.push(describeFrame(frame, offset));
        } catch (err) {
          if (err instanceof WireError) {
            this.payloadError = {
              kind: 'error', offset, at: frameTypeName(frame.type), streamId: frame.streamId, code: err.code, message: err.message,
            };
          }
          throw err;
        }
      });
      this.notePreface(events);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      events.push(this.payloadError ?? this.decoderError(err, events));
      this.finished = true;
      this.recent = [];
      return events;
    }
    this.recent = this.recent.filter((c) => c.start + c.bytes.length > this.frameStart);
    return events;
  }

  /** Reports a preface or frame left incomplete by the end of the input. */
  end(): DumpEvent[] {
    if (this.finished) return [];
    this.finished = true;
    const have = this.received - this.frameStart;
    // An empty capture of a whole connection lacks its preface; without one, zero frames is a clean end.
    if (!this.prefaceDone) {
      return [truncated(0, 'preface', null, null, have, PREFACE_LENGTH)];
    }
    if (have === 0) return [];
    const head = this.bytesAt(this.frameStart, FRAME_HEADER_LENGTH);
    const type = head.length > 3 ? frameTypeName(head[3]!) : null;
    if (head.length < FRAME_HEADER_LENGTH) {
      return [truncated(this.frameStart, 'header', type, null, have, FRAME_HEADER_LENGTH)];
    }
    const length = (head[0]! << 16) | (head[1]! << 8) | head[2]!;
    const streamId = head.readUInt32BE(5) & MAX_STREAM_ID;
    return [truncated(this.frameStart, 'payload', type, streamId, have, FRAME_HEADER_LENGTH + length)];
  }

  private notePreface(events: DumpEvent[]): void {
    if (this.prefaceDone || this.decoder.bytesConsumed < PREFACE_LENGTH) return;
    this.prefaceDone = true;
    this.frameStart = PREFACE_LENGTH;
    events.push({ kind: 'preface', offset: 0, version: PROTOCOL_MAJOR_VERSION });
  }

  private decoderError(err: WireError, events: DumpEvent[]): ErrorEvent {
    if (err.code === 'BAD_PREFACE' || err.code === 'VERSION_MISMATCH') {
      return { kind: 'error', offset: 0, at: 'preface', streamId: null, code: err.code, message: err.message };
    }
    // Any other violation comes after a complete preface, even when no frame was whole yet.
    this.notePreface(events);
    const head = this.bytesAt(this.frameStart, FRAME_HEADER_LENGTH);
    const whole = head.length === FRAME_HEADER_LENGTH;
    return {
      kind: 'error',
      offset: this.frameStart,
      at: whole ? frameTypeName(head[3]!) : 'frame',
      streamId: whole ? head.readUInt32BE(5) & MAX_STREAM_ID : null,
      code: err.code,
      message: err.message,
    };
  }

  /** Up to n bytes of the input from `offset` on, out of the chunks still held. */
  private bytesAt(offset: number, n: number): Buffer {
    const parts: Buffer[] = [];
    let at = offset;
    let want = n;
    for (const { start, bytes } of this.recent) {
      if (want === 0) break;
      const end = start + bytes.length;
      if (end <= at) continue;
      const piece = bytes.subarray(at - start, Math.min(bytes.length, at - start + want));
      parts.push(piece);
      at += piece.length;
      want -= piece.length;
    }
    return Buffer.concat(parts);
  }
}

function truncated(
  offset: number, part: TruncatedEvent['part'], frameType: string | null, streamId: number | null, have: number, need: number,
): TruncatedEvent {
  return { kind: 'truncated', offset, part, frameType, streamId, have, need, missing: need - have };
}

/** Dumps a whole capture at once. */
export function dumpFrames(input: Buffer, options: DumpOptions): DumpEvent[] {
  const dumper = new FrameDumper(options);
  return [...dumper.push(input), ...dumper.end()];
}

/**
 * Describes one frame the decoder accepted. Throws the WireError a receiver would raise when the payload
 * itself is malformed (bad HELLO settings, header fields out of order, a zero CREDIT, a RESET reason overrun).
 */
export function describeFrame(frame: RawFrame, offset: number): FrameEvent {
  return {
    kind: 'frame',
    offset,
    type: frameTypeName(frame.type),
    typeValue: frame.type,
    flags: frame.flags,
    flagNames: flagNames(frame.type, frame.flags),
    streamId: frame.streamId,
    length: frame.payload.length,
    payload: describePayload(frame),
  };
}

function describePayload(frame: RawFrame): PayloadDescription {
  const { payload, streamId } = frame;
  switch (frame.type) {
    case FrameType.HELLO: {
      parseHello(payload); // validates sizes and ranges; the listing below keeps wire order and unknown ids
      const settings: SettingEntry[] = [];
      const extensions: FieldPreview[] = [];
      for (const [tag, value] of decodeFields(payload)) {
        if (tag >= HELLO_EXTENSION_BASE) extensions.push(previewField(tag, EXTENSION_NAMES.get(tag) ?? null, value));
        else settings.push({ id: tag, name: SETTING_NAMES.get(tag) ?? null, value: value.readUInt32BE(0) });
      }
      return { kind: 'hello', settings, extensions };
    }
    case FrameType.OPEN: {
      const open = parseOpen(payload, streamId);
      return { kind: 'open', op: open.op, opVersion: open.opVersion, fields: headerFields(open.header, streamId, 4) };
    }
    case FrameType.REPLY:
      return { kind: 'reply', fields: headerFields(payload, streamId, 0) };
    case FrameType.DATA: {
      const shown = payload.subarray(0, DATA_PREVIEW_BYTES);
      return {
        kind: 'data',
        size: payload.length,
        hex: shown.toString('hex'),
        ascii: [...shown].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join(''),
        truncated: payload.length > shown.length,
      };
    }
    case FrameType.CREDIT:
      return { kind: 'credit', increment: parseCredit(payload, streamId) };
    case FrameType.RESET: {
      const r = parseReset(payload, streamId);
      return { kind: 'reset', code: r.code, codeValue: r.codeValue, knownCode: isKnownErrorValue(r.codeValue), finalSize: r.finalSize, reason: r.reason };
    }
    case FrameType.PING:
      return { kind: 'ping', opaque: payload.toString('hex') };
    case FrameType.PONG:
      return { kind: 'pong', opaque: payload.toString('hex') };
    case FrameType.GOAWAY: {
      const g = parseGoAway(payload);
      return { kind: 'goaway', lastStreamId: g.lastStreamId, code: g.code, codeValue: g.codeValue, knownCode: isKnownErrorValue(g.codeValue), reason: g.reason };
    }
    default:
      if (isKnownFrameType(frame.type)) throw new Error(`frame type ${frameTypeName(frame.type)} has no description`);
      return { kind: 'skipped', grease: isGreaseFrameType(frame.type), size: payload.length };
  }
}

/** Header fields of OPEN and REPLY; errors name the payload offset where the fields start. */
function headerFields(bytes: Buffer, streamId: number, payloadOffset: number): FieldPreview[] {
  if (bytes.length === 0) return NO_FIELDS;
  try {
    return [...decodeFields(bytes, streamId)].map(([tag, value]) => previewField(tag, null, value));
  } catch (err) {
    if (err instanceof WireError) {
      throw new WireError(err.code, `header fields (from payload byte ${payloadOffset}): ${err.message}`, err.streamId);
    }
    throw err;
  }
}

export function flagNames(type: number, flags: number): string[] {
  const names: string[] = [];
  let rest = flags;
  const defined = isKnownFrameType(type) ? DEFINED_FLAGS[type]! : 0;
  if (defined & flags & Flag.END_STREAM) {
    names.push('END_STREAM');
    rest &= ~Flag.END_STREAM;
  }
  for (let bit = 0x01; bit <= 0x80; bit <<= 1) {
    if (rest & bit) names.push(`0x${bit.toString(16).padStart(2, '0')}`);
  }
  return names;
}

function previewField(tag: number, name: string | null, value: Buffer): FieldPreview {
  const text = printableText(value);
  return {
    tag,
    name,
    size: value.length,
    hex: value.subarray(0, FIELD_PREVIEW_BYTES).toString('hex'),
    text: text === null ? null : [...text].slice(0, FIELD_PREVIEW_BYTES).join(''),
    truncated: text === null ? value.length > FIELD_PREVIEW_BYTES : [...text].length > FIELD_PREVIEW_BYTES,
  };
}

/** The value as a string when it is non-empty, valid UTF-8 and free of control characters; else null. */
function printableText(value: Buffer): string | null {
  if (value.length === 0) return null;
  const text = value.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(value)) return null; // invalid UTF-8 decodes to U+FFFD and differs
  if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) return null;
  return text;
}

// ---- Rendering ----

const hex = (n: number, width: number) => `0x${n.toString(16).padStart(width, '0')}`;

/** One line of text per event, starting with the byte offset. */
export function formatEvent(event: DumpEvent): string {
  switch (event.kind) {
    case 'preface':
      return `${pad(0)}  PREFACE  "DFSWIRE" major version ${event.version}`;
    case 'frame': {
      const flags = event.flagNames.length === 0 ? '-' : event.flagNames.join('|');
      const head = `${pad(event.offset)}  ${event.type.padEnd(7)}  stream=${event.streamId} flags=${flags} length=${event.length}`;
      const body = formatPayload(event.payload);
      return body === '' ? head : `${head}  ${body}`;
    }
    case 'error': {
      const where = event.at === 'preface' ? 'the preface'
        : `${event.at === 'frame' ? 'the frame' : `${event.at} frame`}${event.streamId === null ? '' : ` on stream ${event.streamId}`}`;
      return `malformed input at byte ${event.offset} (${where}): ${event.code}: ${event.message}`;
    }
    case 'truncated': {
      const what = event.part === 'preface' ? 'the preface'
        : `${event.frameType === null ? 'a frame' : `${event.frameType} frame`}${event.streamId === null ? '' : ` on stream ${event.streamId}`}`
          + (event.part === 'header' ? ' (header)' : '');
      const need = event.part === 'payload' ? `${event.need} bytes (9-byte header, ${event.need - FRAME_HEADER_LENGTH}-byte payload)` : `${event.need} bytes`;
      return `truncated input at byte ${event.offset}: ${what} needs ${need}, only ${event.have} present, ${event.missing} missing`;
    }
  }
}

function formatPayload(p: PayloadDescription): string {
  switch (p.kind) {
    case 'hello':
      return [
        ...p.settings.map((s) => `${s.name ?? `setting(${hex(s.id, 4)})`}=${s.value}`),
        ...p.extensions.map((e) => formatField(e, e.name ?? `ext(${hex(e.tag, 4)})`)),
      ].join(' ') || '(all settings default)';
    case 'open':
      return [`op=${p.op} opVersion=${p.opVersion}`, ...p.fields.map((f) => formatField(f, hex(f.tag, 4)))].join(' ');
    case 'reply':
      return p.fields.map((f) => formatField(f, hex(f.tag, 4))).join(' ');
    case 'data':
      return p.size === 0 ? 'data=0 bytes'
        : `data=${p.size} bytes ${p.hex}${p.truncated ? '…' : ''} |${p.ascii}${p.truncated ? '…' : ''}|`;
    case 'credit':
      return `increment=${p.increment}`;
    case 'reset':
      return `code=${formatCode(p.code, p.codeValue, p.knownCode)} finalSize=${p.finalSize} reason=${JSON.stringify(p.reason)}`;
    case 'ping':
    case 'pong':
      return `opaque=${p.opaque}`;
    case 'goaway':
      return `lastStreamId=${p.lastStreamId} code=${formatCode(p.code, p.codeValue, p.knownCode)} reason=${JSON.stringify(p.reason)}`;
    case 'skipped':
      return `${p.grease ? 'grease' : 'unknown'} frame type, ${p.size} payload bytes skipped`;
  }
}

function formatField(f: FieldPreview, label: string): string {
  const more = f.truncated ? `…(${f.size} bytes)` : '';
  if (f.text !== null) return `${label}=${JSON.stringify(f.text)}${more}`;
  return f.size === 0 ? `${label}=(empty)` : `${label}=${f.hex}${more}`;
}

function formatCode(code: ErrorCode, value: number, known: boolean): string {
  return known ? `${code}(${hex(value, 2)})` : `${hex(value, 2)}(unknown, read as ${code})`;
}

function pad(offset: number): string {
  return String(offset).padStart(8);
}

/** One JSON object per event, on one line. */
export function formatEventJson(event: DumpEvent): string {
  return JSON.stringify(event);
}

// ---- Hex input ----

/** Strips `#` comments to the end of a line. */
function stripComments(text: string): string {
  return text.replace(/#[^\n]*/g, '');
}

/**
 * True when the bytes read as hex text: hex digits, whitespace, `:` or `,` separators, optional `0x` prefixes and
 * `#` comments, with at least one digit. A binary capture with a preface never qualifies ("DFSWIRE" has W, I, R, S).
 */
export function looksLikeHex(input: Buffer): boolean {
  const text = stripComments(input.toString('latin1')).replace(/(^|[\s:,])0x/gi, '$1');
  return /[0-9a-f]/i.test(text) && /^[\s0-9a-f:,]*$/i.test(text);
}

/** Parses hex text as accepted by looksLikeHex. Throws an Error naming the first bad character or an odd digit count. */
export function parseHex(text: string): Buffer {
  const lines = text.split('\n');
  let digits = '';
  for (let i = 0; i < lines.length; i++) {
    const line = stripComments(lines[i]!).replace(/(^|[\s:,])0x/gi, '$1  ');
    const bad = /[^\s0-9a-f:,]/i.exec(line);
    if (bad) {
      throw new Error(`hex input: unexpected character ${JSON.stringify(bad[0])} at line ${i + 1}, column ${bad.index + 1}`);
    }
    digits += line.replace(/[\s:,]/g, '');
  }
  if (digits.length % 2 !== 0) throw new Error(`hex input has an odd number of digits (${digits.length})`);
  return Buffer.from(digits, 'hex');
}
