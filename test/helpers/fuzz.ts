// Seeded randomness for fuzzing dfs: a replayable PRNG, random valid frame sequences built with the real
// encoders, byte mutators and random splits. Every case derives its own generator from one printed seed, so a
// failure replays with DFS_FUZZ_SEED=<seed> (and DFS_FUZZ_CASE=<n> to run that case alone).

import {
  ERRORS, FRAME_HEADER_LENGTH, FrameDecoder, FrameType, HELLO_EXTENSION_BASE, HelloExtension, MAX_REASON_LENGTH,
  MAX_STREAM_ID, MAX_WINDOW, SETTING_KEYS, SETTING_RANGES, WireError, encodeCredit, encodeData, encodeFields,
  encodeFrame, encodeGoAway, encodeOpen, encodePing, encodePong, encodePreface, encodeReply, encodeReset,
  isKnownFrameType, type DecoderOptions, type ErrorCode, type RawFrame,
} from '../../src/wire/index.js';

// ---- PRNG ----

export interface Rng {
  /** The seed this generator started from. */
  readonly seed: number;
  /** A uniform 32-bit unsigned integer. */
  u32(): number;
  /** A uniform float in [0, 1) with 53 bits of randomness. */
  float(): number;
  /** A uniform integer in lo..hi, both included; exact up to 2^53. */
  int(lo: number, hi: number): number;
  bool(probability?: number): boolean;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Buffer;
  /** A size in 0..max biased towards the edges: 0, 1, small, max-1, max, or anything. */
  size(max: number): number;
}

/** mulberry32: tiny, fast and good enough to drive a fuzzer; the same seed gives the same sequence everywhere. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  const u32 = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const float = (): number => ((u32() >>> 5) * 2 ** 26 + (u32() >>> 6)) / 2 ** 53;
  const int = (lo: number, hi: number): number => lo + Math.floor(float() * (hi - lo + 1));
  return {
    seed: seed >>> 0,
    u32,
    float,
    int,
    bool: (probability = 0.5) => float() < probability,
    pick: <T>(items: readonly T[]): T => items[int(0, items.length - 1)]!,
    bytes: (n: number) => {
      const out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) {
        const v = u32();
        for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (v >>> (8 * j)) & 0xff;
      }
      return out;
    },
    size: (max: number) => {
      const r = float();
      if (r < 0.1) return 0;
      if (r < 0.15) return Math.min(1, max);
      if (r < 0.55) return int(0, Math.min(16, max));
      if (r < 0.6) return Math.max(0, max - 1);
      if (r < 0.65) return max;
      return int(0, max);
    },
  };
}

/** Mixes a seed with labels and indices into a new seed (FNV-1a, then the murmur3 finaliser). */
export function deriveSeed(seed: number, ...salts: (string | number)[]): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (const salt of salts) {
    for (const ch of `${salt}\u0000`) h = Math.imul(h ^ ch.codePointAt(0)!, 0x01000193) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** DFS_FUZZ_SEED (decimal or 0x hex) when set, else a fresh random seed. */
export function fuzzSeed(): number {
  const text = process.env.DFS_FUZZ_SEED;
  if (text === undefined || text === '') return (Math.random() * 2 ** 32) >>> 0;
  const seed = Number(text);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) throw new Error(`DFS_FUZZ_SEED=${text} is not a u32`);
  return seed;
}

/** Case counts are multiplied by DFS_FUZZ_SCALE (default 1), for longer runs outside CI. */
export function fuzzCount(base: number): number {
  const scale = Number(process.env.DFS_FUZZ_SCALE ?? '1');
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

export function formatSeed(seed: number): string {
  return `0x${(seed >>> 0).toString(16).padStart(8, '0')}`;
}

/**
 * Runs `count` cases, each with its own generator derived from (seed, label, index). A failure is rethrown
 * with a message that starts with `seed=… case=…`, the two values that replay it.
 */
export function runCases(seed: number, label: string, count: number, fn: (rng: Rng, index: number) => void): void {
  const only = process.env.DFS_FUZZ_CASE;
  for (let i = 0; i < count; i++) {
    if (only !== undefined && only !== '' && Number(only) !== i) continue;
    const rng = createRng(deriveSeed(seed, label, i));
    try {
      fn(rng, i);
    } catch (err) {
      const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      const replay = `DFS_FUZZ_SEED=${formatSeed(seed)} DFS_FUZZ_CASE=${i}`;
      const wrapped = new Error(`seed=${formatSeed(seed)} case=${i} (${label}; replay with ${replay}): ${message}`, { cause: err });
      if (err instanceof Error && err.stack) wrapped.stack = `${wrapped.message}\n${err.stack.split('\n').slice(1).join('\n')}`;
      throw wrapped;
    }
  }
}

// ---- Random valid frames ----

/** What a random frame may be: one of the spec's types, a grease type (0xE0-0xEF) or another unknown type. */
export type FrameKind = 'OPEN' | 'REPLY' | 'DATA' | 'CREDIT' | 'RESET' | 'PING' | 'PONG' | 'GOAWAY' | 'GREASE' | 'UNKNOWN';
export const FRAME_KINDS: readonly FrameKind[] = ['OPEN', 'REPLY', 'DATA', 'CREDIT', 'RESET', 'PING', 'PONG', 'GOAWAY', 'GREASE', 'UNKNOWN'];

export interface SequenceOptions {
  /** Start with the preface and a HELLO (a whole connection), or with an arbitrary frame (mid-connection). */
  expectPreface: boolean;
  /** Every payload stays within this many bytes; at least 64. */
  maxFrameSize: number;
  /** Number of frames after the HELLO (default 0-12). */
  frames?: number;
  /** Frame kinds to draw from (default all). */
  kinds?: readonly FrameKind[];
}

export interface FrameSequence {
  bytes: Buffer;
  /** The frames as a decoder must deliver them, HELLO included. */
  frames: RawFrame[];
  /** Byte offset of each frame in `bytes`. */
  offsets: number[];
  expectPreface: boolean;
  maxFrameSize: number;
}

/**
 * A byte stream every receiver must accept frame by frame: each frame is built with the real encoders and is
 * valid on its own (sizes, stream ids, flags, settings ranges, field order). Stream states are not modelled:
 * the sequence may, say, send DATA on a stream never opened.
 */
export function randomFrameSequence(rng: Rng, options: SequenceOptions): FrameSequence {
  if (options.maxFrameSize < 64) throw new RangeError('randomFrameSequence needs maxFrameSize >= 64');
  const encoded: Buffer[] = [];
  const frames: RawFrame[] = [];
  const offsets: number[] = [];
  let at = 0;
  const add = (bytes: Buffer, frame: RawFrame | null) => {
    encoded.push(bytes);
    if (frame) {
      offsets.push(at);
      frames.push(frame);
    }
    at += bytes.length;
  };
  if (options.expectPreface) add(encodePreface(), null);
  // Without a preface the capture may start at the HELLO or anywhere after it.
  if (options.expectPreface || rng.bool(0.3)) add(...randomHello(rng, options.maxFrameSize));
  const count = options.frames ?? rng.int(0, 12);
  const kinds = options.kinds ?? FRAME_KINDS;
  for (let i = 0; i < count; i++) add(...randomFrame(rng, rng.pick(kinds), options.maxFrameSize));
  return { bytes: Buffer.concat(encoded), frames, offsets, expectPreface: options.expectPreface, maxFrameSize: options.maxFrameSize };
}

/** A HELLO with random in-range settings, unknown setting ids and extensions, within maxPayload bytes. */
export function randomHello(rng: Rng, maxPayload: number): [Buffer, RawFrame] {
  const fields: [number, Buffer][] = [];
  for (const [id, key] of Object.entries(SETTING_KEYS)) {
    if (!rng.bool(0.6)) continue;
    const [lo, hi] = SETTING_RANGES[key];
    fields.push([Number(id), u32(rng.bool(0.2) ? rng.pick([lo, hi]) : rng.int(lo, hi))]);
  }
  // Unknown setting ids must be skipped by receivers (spec: ignore unknown settings).
  for (let n = rng.int(0, 2); n > 0; n--) fields.push([rng.int(0x0007, HELLO_EXTENSION_BASE - 1), u32(rng.u32())]);
  if (rng.bool(0.5)) fields.push([HelloExtension.AGENT, Buffer.from(randomString(rng, 24), 'utf8')]);
  for (let n = rng.int(0, 2); n > 0; n--) fields.push([rng.int(HelloExtension.AGENT + 1, 0xffff), rng.bytes(rng.size(24))]);
  const unique = [...new Map(fields).entries()];
  let payload = encodeFields(unique);
  while (payload.length > maxPayload) payload = encodeFields(unique.splice(0, unique.length - 1));
  return withFlags(encodeFrame(FrameType.HELLO, 0, 0, payload), rng.bool(0.2) ? rng.int(0, 0x0f) : 0, rng);
}

/** One valid frame of the given kind with a payload of at most maxPayload bytes (at least 64). */
export function randomFrame(rng: Rng, kind: FrameKind, maxPayload: number): [Buffer, RawFrame] {
  // Unknown flag bits below 0x10 are ignored by receivers, so valid frames may carry them.
  const looseFlags = () => (rng.bool(0.2) ? rng.int(0, 0x0f) : 0);
  const endStream = () => rng.bool(0.3);
  switch (kind) {
    case 'OPEN': {
      const header = randomFields(rng, maxPayload - 4);
      const bytes = encodeOpen(streamId(rng), rng.int(0, 0xffff), rng.int(0, 0xffff), header, endStream());
      return withFlags(bytes, bytes[4]! | looseFlags(), rng);
    }
    case 'REPLY': {
      const bytes = encodeReply(streamId(rng), randomFields(rng, maxPayload), endStream());
      return withFlags(bytes, bytes[4]! | looseFlags(), rng);
    }
    case 'DATA': {
      const bytes = encodeData(streamId(rng), rng.bytes(rng.size(maxPayload)), endStream());
      return withFlags(bytes, bytes[4]! | looseFlags(), rng);
    }
    case 'CREDIT':
      return withFlags(encodeCredit(rng.bool(0.3) ? 0 : streamId(rng), rng.bool(0.2) ? rng.pick([1, MAX_WINDOW]) : rng.int(1, MAX_WINDOW)), looseFlags(), rng);
    case 'RESET':
      return withFlags(encodeReset(streamId(rng), errorCode(rng), rng.int(0, Number.MAX_SAFE_INTEGER),
        randomReason(rng, Math.min(MAX_REASON_LENGTH, maxPayload - 14))), looseFlags(), rng);
    case 'PING':
      return withFlags(encodePing(rng.bytes(8)), looseFlags(), rng);
    case 'PONG':
      return withFlags(encodePong(rng.bytes(8)), looseFlags(), rng);
    case 'GOAWAY':
      return withFlags(encodeGoAway(rng.int(0, MAX_STREAM_ID), errorCode(rng),
        randomReason(rng, Math.min(MAX_REASON_LENGTH, maxPayload - 10))), looseFlags(), rng);
    case 'GREASE':
    case 'UNKNOWN': {
      let type = kind === 'GREASE' ? rng.int(0xe0, 0xef) : rng.int(0x09, 0xff);
      while (isKnownFrameType(type)) type = rng.int(0x09, 0xff);
      return withFlags(encodeFrame(type, 0, rng.bool(0.5) ? 0 : streamId(rng), rng.bytes(rng.size(maxPayload))), rng.int(0, 0x0f), rng);
    }
  }
}

/** Tagged fields with distinct random tags and values, encoded in at most maxBytes bytes. */
export function randomFields(rng: Rng, maxBytes: number): Buffer {
  const fields = new Map<number, Buffer>();
  let size = 0;
  for (let n = rng.int(0, 6); n > 0; n--) {
    const value = rng.bool(0.5) ? Buffer.from(randomString(rng, 20), 'utf8') : rng.bytes(rng.size(32));
    if (size + 6 + value.length > maxBytes) break;
    const tag = rng.bool(0.8) ? rng.int(0, 16) : rng.int(0, 0xffff);
    if (fields.has(tag)) continue;
    fields.set(tag, value);
    size += 6 + value.length;
  }
  return encodeFields(fields);
}

/** A string of random code points (ASCII, 2-, 3- and 4-byte UTF-8; never a lone surrogate). */
export function randomString(rng: Rng, maxChars: number): string {
  let out = '';
  for (let n = rng.size(maxChars); n > 0; n--) {
    const r = rng.float();
    let cp: number;
    if (r < 0.7) cp = rng.int(0x20, 0x7e);
    else if (r < 0.8) cp = rng.int(0x80, 0x7ff);
    else if (r < 0.9) { do cp = rng.int(0x800, 0xffff); while (cp >= 0xd800 && cp <= 0xdfff); }
    else if (r < 0.95) cp = rng.int(0x10000, 0x10ffff);
    else cp = rng.int(0, 0x1f);
    out += String.fromCodePoint(cp);
  }
  return out;
}

function randomReason(rng: Rng, maxBytes: number): string {
  const text = randomString(rng, 40);
  // The encoders cut long reasons themselves; staying short keeps the frame inside maxPayload.
  return Buffer.byteLength(text) <= maxBytes ? text : '';
}

function errorCode(rng: Rng): ErrorCode | number {
  if (rng.bool(0.2)) return rng.u32(); // unknown codes travel as numbers and read back as INTERNAL_ERROR
  return rng.pick(Object.keys(ERRORS) as ErrorCode[]);
}

function streamId(rng: Rng): number {
  return rng.bool(0.8) ? rng.int(1, 64) : rng.int(1, MAX_STREAM_ID);
}

function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

/**
 * Rewrites the flags byte of an encoded frame and sometimes sets the reserved top bit of the stream id, which
 * receivers ignore; the expected frame is read back from the encoder's header.
 */
function withFlags(bytes: Buffer, flags: number, rng: Rng): [Buffer, RawFrame] {
  bytes[4] = flags;
  if (rng.bool(0.1)) bytes[5] = bytes[5]! | 0x80;
  return [bytes, {
    type: bytes[3]!, flags, streamId: bytes.readUInt32BE(5) & MAX_STREAM_ID, payload: bytes.subarray(FRAME_HEADER_LENGTH),
  }];
}

// ---- Mutation and splitting ----

/** Values that sit on the edges of length, id and code fields. */
const INTERESTING_U8 = [0x00, 0x01, 0x07, 0x08, 0x0f, 0x10, 0x7f, 0x80, 0xe0, 0xef, 0xf0, 0xff];
const INTERESTING_U32 = [0, 1, 8, 9, 0x3ff, 0x400, 0xffff, 0x1_0000, 0xff_ffff, 0x100_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

/**
 * Applies 1-4 random mutations: bit flips, edge values written over bytes, u16/u32 edge values written over
 * length fields, inserted, deleted and duplicated ranges, and truncation. When `targets` (frame offsets) is given,
 * half the mutations land in or right after a frame header, where the decoder's decisions are.
 */
export function mutate(rng: Rng, input: Buffer, targets: readonly number[] = []): Buffer {
  let bytes = Buffer.from(input);
  for (let n = rng.int(1, 4); n > 0; n--) {
    const position = () => {
      if (bytes.length === 0) return 0;
      if (targets.length > 0 && rng.bool(0.5)) return Math.min(bytes.length - 1, rng.pick(targets) + rng.int(0, FRAME_HEADER_LENGTH + 6));
      return rng.int(0, bytes.length - 1);
    };
    switch (rng.int(0, 7)) {
      case 0: {
        if (bytes.length === 0) break;
        const at = position();
        bytes[at] = bytes[at]! ^ (1 << rng.int(0, 7));
        break;
      }
      case 1:
        if (bytes.length > 0) bytes[position()] = rng.pick(INTERESTING_U8);
        break;
      case 2: {
        const width = rng.pick([2, 3, 4]);
        const at = position();
        if (at + width > bytes.length) break;
        bytes.writeUIntBE(rng.pick(INTERESTING_U32) % 2 ** (8 * width), at, width);
        break;
      }
      case 3: {
        const at = rng.int(0, bytes.length);
        bytes = Buffer.concat([bytes.subarray(0, at), rng.bytes(rng.int(1, 16)), bytes.subarray(at)]);
        break;
      }
      case 4: {
        const at = rng.int(0, bytes.length);
        const end = Math.min(bytes.length, at + rng.int(1, 32));
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(end)]);
        break;
      }
      case 5: {
        if (bytes.length === 0) break;
        const from = rng.int(0, bytes.length - 1);
        const slice = bytes.subarray(from, Math.min(bytes.length, from + rng.int(1, 64)));
        const at = rng.int(0, bytes.length);
        bytes = Buffer.concat([bytes.subarray(0, at), slice, bytes.subarray(at)]);
        break;
      }
      case 6:
        bytes = bytes.subarray(0, rng.int(0, bytes.length));
        break;
      case 7: {
        if (bytes.length === 0) break;
        const at = position();
        bytes[at] = rng.u32() & 0xff;
        break;
      }
    }
  }
  return bytes;
}

/** Cuts bytes into pieces at random offsets: whole, a few cuts, many cuts, or one byte at a time; pieces may be empty. */
export function splitRandomly(rng: Rng, bytes: Buffer): Buffer[] {
  const r = rng.float();
  if (r < 0.1 || bytes.length === 0) return rng.bool(0.5) ? [bytes] : [Buffer.alloc(0), bytes, Buffer.alloc(0)];
  if (r < 0.2 && bytes.length <= 4096) return [...bytes].map((_, i) => bytes.subarray(i, i + 1));
  const cuts = Array.from({ length: rng.int(1, r < 0.6 ? 4 : 64) }, () => rng.int(0, bytes.length)).sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    pieces.push(bytes.subarray(at, cut));
    at = cut;
  }
  return pieces;
}

// ---- Reference decoding ----

export interface DecodeOutcome {
  frames: RawFrame[];
  /** Whatever the decoder threw, or null when it took every chunk. */
  error: unknown;
  decoder: FrameDecoder;
}

/**
 * Feeds chunks to a fresh FrameDecoder until it throws. `afterPush` runs after every push that returned, to
 * check invariants that must hold between reads.
 */
export function decodeChunks(
  chunks: readonly Buffer[], options: DecoderOptions, afterPush?: (decoder: FrameDecoder, pushed: number) => void,
): DecodeOutcome {
  const decoder = new FrameDecoder(options);
  const frames: RawFrame[] = [];
  let pushed = 0;
  for (const chunk of chunks) {
    try {
      decoder.push(chunk, (frame) => frames.push(frame));
    } catch (error) {
      return { frames, error, decoder };
    }
    pushed += chunk.length;
    afterPush?.(decoder, pushed);
  }
  return { frames, error: null, decoder };
}

/** True when err is a WireError whose code is in the registry: the only thing the codec may throw on bad bytes. */
export function isRegisteredWireError(err: unknown): err is WireError {
  return err instanceof WireError && Object.hasOwn(ERRORS, err.code);
}
