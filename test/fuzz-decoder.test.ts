// Seeded fuzzing of the pure wire codec. The decoder faces bytes from any peer, so whatever arrives it must
// either deliver frames or throw a registered WireError, hold at most one frame's bytes, and never depend on
// how the bytes were split into reads. Failures print `seed=… case=…`; replay with DFS_FUZZ_SEED / DFS_FUZZ_CASE.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FRAME_HEADER_LENGTH, FrameType, MAX_FRAME_SIZE_CEILING, PREFACE_LENGTH, decodeFields, decodeRecord, encodeFields,
  encodeFrameHeader, encodePreface, encodeRecord, parseCredit, parseGoAway, parseHello, parseOpen, parseReset,
  type Decoded, type FieldType, type FrameDecoder, type RawFrame, type Schema,
} from '../src/wire/index.js';
import { dumpFrames } from '../tools/frame-dump.js';
import {
  FRAME_KINDS, decodeChunks, formatSeed, fuzzCount, fuzzSeed, isRegisteredWireError, mutate, randomFrame,
  randomFrameSequence, randomHello, randomString, runCases, splitRandomly, type DecodeOutcome, type Rng,
} from './helpers/fuzz.js';

const SEED = fuzzSeed();
const TIMEOUT = { timeout: 30_000 };

/** Mostly small limits, so generated frames and mutated lengths cross them often. */
function randomMaxFrameSize(rng: Rng): number {
  return rng.bool(0.05) ? 65_536 : rng.pick([64, 100, 256, 1024, 4096]);
}

/** Invariants that hold between any two reads: bounded buffering, and every pushed byte accounted for. */
function checkBetweenReads(maxFrameSize: number) {
  return (decoder: FrameDecoder, pushed: number) => {
    assert.ok(decoder.pendingBytes <= FRAME_HEADER_LENGTH + maxFrameSize,
      `pendingBytes ${decoder.pendingBytes} exceeds one header plus one ${maxFrameSize}-byte payload`);
    assert.equal(decoder.bytesConsumed + decoder.pendingBytes, pushed, 'bytes pushed = bytes consumed + bytes pending');
  };
}

function normalize(frames: readonly RawFrame[]) {
  return frames.map((f) => ({ type: f.type, flags: f.flags, streamId: f.streamId, payload: f.payload.toString('hex') }));
}

/** What a decode produced, for comparing two splits of the same bytes; fails on anything but a registered WireError. */
function outcome(o: DecodeOutcome, input: Buffer) {
  if (o.error !== null && !isRegisteredWireError(o.error)) {
    assert.fail(`decoder threw something other than a registered WireError on ${input.toString('hex').slice(0, 200)}: ${
      o.error instanceof Error ? o.error.stack : String(o.error)}`);
  }
  // A frame takes at least 9 bytes, so more frames than that means the decoder invented some.
  assert.ok(o.frames.length <= Math.floor(input.length / FRAME_HEADER_LENGTH), `${o.frames.length} frames from ${input.length} bytes`);
  return { frames: normalize(o.frames), error: o.error === null ? null : { code: o.error.code, message: o.error.message } };
}

/** Once a decoder threw, every later push throws a WireError and delivers nothing. */
function assertStaysFailed(decoder: FrameDecoder, rng: Rng): void {
  for (const chunk of [Buffer.alloc(0), rng.bytes(rng.int(1, 32)), encodePreface()]) {
    let delivered = false;
    assert.throws(() => decoder.push(chunk, () => { delivered = true; }), isRegisteredWireError, 'a failed decoder accepted more bytes');
    assert.equal(delivered, false, 'a failed decoder delivered a frame');
  }
}

/** Decodes bytes whole and split at random points: both must agree, and both must respect the invariants. */
function decodeBothWays(rng: Rng, bytes: Buffer, expectPreface: boolean, maxFrameSize: number) {
  const options = { expectPreface, maxFrameSize };
  const whole = decodeChunks([bytes], options, checkBetweenReads(maxFrameSize));
  const split = decodeChunks(splitRandomly(rng, bytes), options, checkBetweenReads(maxFrameSize));
  const a = outcome(whole, bytes);
  const b = outcome(split, bytes);
  assert.deepEqual(b, a, 'decoding split bytes differs from decoding them whole');
  if (whole.error !== null) {
    assertStaysFailed(whole.decoder, rng);
    assertStaysFailed(split.decoder, rng);
  }
  return { whole, split };
}

/** Runs the payload parser a receiver would run; they may throw only WireError on frames the decoder accepted. */
function parsePayload(frame: RawFrame): void {
  switch (frame.type) {
    case FrameType.HELLO: parseHello(frame.payload); break;
    case FrameType.OPEN: decodeFields(parseOpen(frame.payload, frame.streamId).header, frame.streamId); break;
    case FrameType.REPLY: decodeFields(frame.payload, frame.streamId); break;
    case FrameType.CREDIT: parseCredit(frame.payload, frame.streamId); break;
    case FrameType.RESET: parseReset(frame.payload, frame.streamId); break;
    case FrameType.GOAWAY: parseGoAway(frame.payload); break;
  }
}

test('valid frame sequences decode to the frames that built them, however the bytes are split', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  runCases(SEED, 'valid', fuzzCount(600), (rng) => {
    const seq = randomFrameSequence(rng, { expectPreface: rng.bool(), maxFrameSize: randomMaxFrameSize(rng) });
    const { whole, split } = decodeBothWays(rng, seq.bytes, seq.expectPreface, seq.maxFrameSize);
    assert.equal(whole.error, null, `valid sequence rejected: ${String(whole.error)}`);
    assert.deepEqual(normalize(split.frames), normalize(seq.frames));
    assert.equal(split.decoder.pendingBytes, 0);
    assert.equal(split.decoder.bytesConsumed, seq.bytes.length);
    for (const frame of split.frames) parsePayload(frame); // valid frames parse without error
  });
});

test('a truncated valid sequence yields exactly the frames wholly inside it and keeps the rest pending', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  runCases(SEED, 'truncated', fuzzCount(600), (rng) => {
    const seq = randomFrameSequence(rng, { expectPreface: rng.bool(), maxFrameSize: randomMaxFrameSize(rng) });
    const cut = rng.int(0, seq.bytes.length);
    const bytes = seq.bytes.subarray(0, cut);
    const { split } = decodeBothWays(rng, bytes, seq.expectPreface, seq.maxFrameSize);
    assert.equal(split.error, null, `a prefix of a valid sequence was rejected: ${String(split.error)}`);
    const inside = seq.frames.filter((f, i) => seq.offsets[i]! + FRAME_HEADER_LENGTH + f.payload.length <= cut);
    assert.deepEqual(normalize(split.frames), normalize(inside));
    const lastEnd = inside.length === 0 ? (seq.expectPreface && cut >= PREFACE_LENGTH ? PREFACE_LENGTH : 0)
      : seq.offsets[inside.length - 1]! + FRAME_HEADER_LENGTH + inside.at(-1)!.payload.length;
    assert.ok(split.decoder.bytesConsumed >= lastEnd, `consumed ${split.decoder.bytesConsumed}, last whole frame ends at ${lastEnd}`);
    assert.equal(split.decoder.bytesConsumed + split.decoder.pendingBytes, cut);
  });
});

test('mutated sequences fail only with registered WireErrors, the same way however they are split', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  let failures = 0;
  const count = fuzzCount(2500);
  runCases(SEED, 'mutated', count, (rng) => {
    const seq = randomFrameSequence(rng, { expectPreface: rng.bool(), maxFrameSize: randomMaxFrameSize(rng) });
    const bytes = mutate(rng, seq.bytes, seq.offsets);
    const { whole } = decodeBothWays(rng, bytes, seq.expectPreface, seq.maxFrameSize);
    if (whole.error !== null) failures++;
    for (const frame of whole.frames) {
      try {
        parsePayload(frame);
      } catch (err) {
        if (!isRegisteredWireError(err)) assert.fail(`parsing a ${frame.type} payload threw ${err instanceof Error ? err.stack : String(err)}`);
      }
    }
  });
  // Mutations that never trip the decoder would mean this test exercises nothing.
  assert.ok(failures > count / 10, `only ${failures} of ${count} mutated sequences were rejected`);
});

test('random bytes fail only with registered WireErrors, with and without a preface', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  runCases(SEED, 'random', fuzzCount(1500), (rng) => {
    const maxFrameSize = randomMaxFrameSize(rng);
    const expectPreface = rng.bool();
    // Prefixes that get random bytes past the preface and the HELLO rule, where the frame checks are.
    const prefix = rng.pick([
      () => Buffer.alloc(0),
      () => (expectPreface ? encodePreface() : Buffer.alloc(0)),
      () => Buffer.concat([expectPreface ? encodePreface() : Buffer.alloc(0), randomHello(rng, maxFrameSize)[0]]),
    ])();
    const bytes = Buffer.concat([prefix, rng.bytes(rng.size(2048))]);
    decodeBothWays(rng, bytes, expectPreface, maxFrameSize);
  });
});

test('a declared length above the limit fails at its header, before any payload is buffered', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  runCases(SEED, 'oversized', fuzzCount(500), (rng) => {
    const maxFrameSize = randomMaxFrameSize(rng);
    const length = rng.bool(0.3) ? maxFrameSize + 1 : rng.int(maxFrameSize + 1, MAX_FRAME_SIZE_CEILING);
    const [hello] = randomHello(rng, Math.min(maxFrameSize, 1024));
    const kind = rng.pick(FRAME_KINDS);
    const type = randomFrame(rng, kind, 64)[0][3]!;
    const header = encodeFrameHeader(type, 0, type === FrameType.PING || type === FrameType.PONG || type === FrameType.GOAWAY ? 0 : 1, length);
    const bytes = Buffer.concat([encodePreface(), hello, header]);
    const o = decodeChunks(splitRandomly(rng, bytes), { maxFrameSize }, checkBetweenReads(maxFrameSize));
    assert.ok(isRegisteredWireError(o.error), `no error for a ${length}-byte frame above a ${maxFrameSize}-byte limit`);
    assert.equal(o.error.code, 'FRAME_SIZE_ERROR');
    assert.equal(o.frames.length, 1, 'only the HELLO is delivered');
  });
});

// ---- Tagged fields and records ----

const Inner = {
  id: { tag: 1, type: 'u64' },
  name: { tag: 2, type: 'string' },
  marks: { tag: 3, type: { list: 'u8' }, optional: true },
} as const satisfies Schema;

const Outer = {
  small: { tag: 0, type: 'u8' },
  port: { tag: 1, type: 'u16' },
  size: { tag: 2, type: 'u32' },
  offset: { tag: 3, type: 'u64' },
  flag: { tag: 4, type: 'bool' },
  path: { tag: 5, type: 'string' },
  blob: { tag: 6, type: 'bytes', optional: true },
  names: { tag: 7, type: { list: 'string' } },
  owner: { tag: 8, type: { record: Inner }, optional: true },
  replicas: { tag: 9, type: { list: { record: Inner } } },
  grid: { tag: 0x100, type: { list: { list: 'u32' } }, optional: true },
  checksums: { tag: 0xfffe, type: { list: 'bytes' }, optional: true },
} as const satisfies Schema;

const OUTER_TAGS = new Set<number>(Object.values(Outer).map((spec) => spec.tag));

function randomValue(rng: Rng, type: FieldType, depth = 0): unknown {
  if (typeof type === 'object') {
    if ('list' in type) return Array.from({ length: rng.int(0, depth > 1 ? 2 : 5) }, () => randomValue(rng, type.list, depth + 1));
    return randomRecord(rng, type.record, depth + 1);
  }
  switch (type) {
    case 'u8': return rng.bool(0.2) ? rng.pick([0, 0xff]) : rng.int(0, 0xff);
    case 'u16': return rng.bool(0.2) ? rng.pick([0, 0xffff]) : rng.int(0, 0xffff);
    case 'u32': return rng.bool(0.2) ? rng.pick([0, 0xffff_ffff]) : rng.int(0, 0xffff_ffff);
    case 'u64': return rng.bool(0.2) ? rng.pick([0, 2 ** 32, Number.MAX_SAFE_INTEGER]) : rng.int(0, Number.MAX_SAFE_INTEGER);
    case 'bool': return rng.bool();
    case 'string': return randomString(rng, 24);
    case 'bytes': return rng.bytes(rng.size(40));
  }
}

function randomRecord(rng: Rng, schema: Schema, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    if (spec.optional && rng.bool(0.4)) continue;
    out[name] = randomValue(rng, spec.type, depth);
  }
  return out;
}

function onlyWireErrors(what: string, fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (!isRegisteredWireError(err)) assert.fail(`${what} threw ${err instanceof Error ? err.stack : String(err)}`);
    return false;
  }
}

test('decodeFields takes any bytes: a WireError, or fields that re-encode to exactly those bytes', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  let accepted = 0;
  const count = fuzzCount(2000);
  runCases(SEED, 'fields', count, (rng) => {
    const valid = encodeRecord(Outer, randomRecord(rng, Outer));
    const bytes = rng.pick([() => rng.bytes(rng.size(64)), () => mutate(rng, valid), () => valid])();
    let fields: Map<number, Buffer> | undefined;
    if (!onlyWireErrors('decodeFields', () => { fields = decodeFields(bytes); })) return;
    accepted++;
    const tags = [...fields!.keys()];
    assert.deepEqual(tags, [...tags].sort((a, b) => a - b), 'tags come out in ascending order');
    // Tags strictly ascend on the wire, so every field list has exactly one encoding.
    assert.equal(encodeFields(fields!).toString('hex'), bytes.toString('hex'));
  });
  assert.ok(accepted > count / 4 && accepted < count, `${accepted} of ${count} inputs accepted`);
});

test('records round-trip through encodeRecord and decodeRecord, and unknown fields are skipped', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  runCases(SEED, 'records', fuzzCount(1500), (rng) => {
    const value = randomRecord(rng, Outer) as Decoded<typeof Outer>;
    const encoded = encodeRecord(Outer, value);
    assert.deepEqual(decodeRecord(Outer, encoded), value);
    // A newer peer may add fields this schema does not know; they must not change what is decoded.
    const fields = decodeFields(encoded);
    for (let n = rng.int(1, 3); n > 0; n--) {
      const tag = rng.int(0, 0xffff);
      if (!OUTER_TAGS.has(tag)) fields.set(tag, rng.bytes(rng.size(16)));
    }
    assert.deepEqual(decodeRecord(Outer, encodeFields(fields)), value);
  });
});

test('mutated and random records fail only with registered WireErrors', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  let rejected = 0;
  const count = fuzzCount(2000);
  runCases(SEED, 'record-mutations', count, (rng) => {
    const valid = encodeRecord(Outer, randomRecord(rng, Outer));
    const bytes = rng.bool(0.85) ? mutate(rng, valid) : rng.bytes(rng.size(128));
    if (!onlyWireErrors('decodeRecord', () => decodeRecord(Outer, bytes))) rejected++;
  });
  assert.ok(rejected > count / 4, `only ${rejected} of ${count} damaged records were rejected`);
});

/** The same schema with every string read as bytes, so a decoded value can be compared byte for byte. */
function stringsAsBytes(type: FieldType): FieldType {
  if (type === 'string') return 'bytes';
  if (typeof type !== 'object') return type;
  if ('list' in type) return { list: stringsAsBytes(type.list) };
  return { record: Object.fromEntries(Object.entries(type.record).map(([k, spec]) => [k, { ...spec, type: stringsAsBytes(spec.type) }])) };
}
const OuterBytes = (stringsAsBytes({ record: Outer }) as { record: Schema }).record;

function containsRecord(type: FieldType): boolean {
  return typeof type === 'object' && ('record' in type || containsRecord(type.list));
}
/** Fields compared byte for byte; those holding records are left out, as records drop unknown fields by design. */
const FLAT_TAGS = new Set<number>(Object.values(Outer).filter((spec) => !containsRecord(spec.type)).map((spec) => spec.tag));

test('a record accepted by decodeRecord has exactly one encoding: its flat fields re-encode byte for byte', TIMEOUT, (t) => {
  // Two encodings of one value (trailing bytes in a list, a bool of 2, a short integer) let peers disagree
  // about what was sent; checksums and signatures over headers depend on there being one.
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  let accepted = 0;
  const count = fuzzCount(3000);
  runCases(SEED, 'canonical', count, (rng) => {
    const bytes = mutate(rng, encodeRecord(Outer, randomRecord(rng, Outer)));
    let value: Record<string, unknown> | undefined;
    if (!onlyWireErrors('decodeRecord', () => { value = decodeRecord(OuterBytes, bytes); })) return;
    accepted++;
    const flat = (buf: Buffer) => encodeFields([...decodeFields(buf)].filter(([tag]) => FLAT_TAGS.has(tag))).toString('hex');
    assert.equal(flat(encodeRecord(OuterBytes, value!)), flat(bytes));
  });
  assert.ok(accepted > count / 20, `only ${accepted} of ${count} mutated records were accepted`);
});

// ---- The frame dump tool rides on the decoder; it must describe any input without throwing ----

test('the frame dump describes any input without throwing and agrees with the decoder', TIMEOUT, (t) => {
  t.diagnostic(`seed=${formatSeed(SEED)}`);
  runCases(SEED, 'dump', fuzzCount(800), (rng) => {
    const seq = randomFrameSequence(rng, { expectPreface: rng.bool(), maxFrameSize: randomMaxFrameSize(rng) });
    const bytes = rng.bool(0.8) ? mutate(rng, seq.bytes, seq.offsets) : seq.bytes;
    const options = { expectPreface: seq.expectPreface, maxFrameSize: seq.maxFrameSize };
    const events = dumpFrames(bytes, options);
    const decoded = decodeChunks([bytes], options);
    const frames = events.filter((e) => e.kind === 'frame');
    const last = events.at(-1);
    assert.ok(frames.length <= decoded.frames.length);
    // Frame events match the decoder's frames and tile the input from the end of the preface on.
    let offset = seq.expectPreface ? PREFACE_LENGTH : 0;
    for (const [i, frame] of frames.entries()) {
      const raw = decoded.frames[i]!;
      assert.deepEqual([frame.offset, frame.typeValue, frame.flags, frame.streamId, frame.length],
        [offset, raw.type, raw.flags, raw.streamId, raw.payload.length]);
      offset += FRAME_HEADER_LENGTH + frame.length;
    }
    if (last?.kind === 'error') {
      if (frames.length === decoded.frames.length) {
        // The decoder itself rejected the bytes: same code, same words.
        assert.ok(isRegisteredWireError(decoded.error), 'the dump reports an error the decoder did not raise');
        assert.deepEqual([last.code, last.message], [decoded.error.code, decoded.error.message]);
      } else {
        // The decoder accepted the frame, its payload parser did not.
        const bad = decoded.frames[frames.length]!;
        assert.equal(last.offset, offset);
        assert.throws(() => parsePayload(bad), (e) => isRegisteredWireError(e) && e.code === last.code);
      }
    } else if (last?.kind === 'truncated') {
      assert.equal(decoded.error, null);
      assert.equal(frames.length, decoded.frames.length);
      assert.equal(last.offset + last.have, bytes.length, 'the truncated part runs to the end of the input');
      assert.ok(last.missing > 0);
    } else {
      assert.equal(decoded.error, null);
      assert.equal(decoded.decoder.pendingBytes, 0);
      assert.equal(frames.length, decoded.frames.length);
    }
  });
});
