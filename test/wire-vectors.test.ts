// Replays the hex test vectors of wire-spec.md (Appendix A) against the codec, straight from the spec.
// Another implementation is written from that document alone, so every byte it shows must be what dfs
// sends and accepts: each vector is decoded whole, split in two at every byte boundary and fed one byte
// at a time, and each positive vector is encoded back to its bytes. The registries the spec prints
// (frame types, settings, error codes) are checked against the code as well.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  DEFAULT_SETTINGS, ERRORS, FRAME_HEADER_LENGTH, FrameDecoder, PREFACE_LENGTH, FrameType, HelloExtension, SETTING_KEYS, SETTING_RANGES, Setting, WireError,
  decodeFields, decodeRecord, encodeData, encodeFields, encodeFrame, encodeGoAway, encodeCredit, encodeHello, encodeOpen,
  encodePing, encodePong, encodePreface, encodeRecord, encodeReply, encodeReset, isKnownFrameType, parseCredit,
  parseGoAway, parseHello, parseOpen, parseReset,
  type ErrorCode, type FieldType, type RawFrame, type Schema, type Settings,
} from '../src/wire/index.js';

const SPEC = readFileSync(new URL('../wire-spec.md', import.meta.url), 'utf8');

// ---- Reading the vectors out of the spec ----

interface Vector {
  name: string;
  kind: 'frames' | 'fields' | 'record';
  start?: 'preface' | 'frames';
  bytes: Buffer;
  canonical?: Buffer;
  expect?: unknown;
  error?: ErrorCode;
  scope?: 'connection' | 'stream';
  pending: number;
  maxFrameSize: number;
  schema?: Schema;
}

const KEYS = new Set(['name', 'kind', 'start', 'hex', 'canonical', 'expect', 'error', 'scope', 'pending', 'max-frame-size', 'schema']);

/** Hex as the spec writes it: pairs of digits separated by blanks, `#` comments to the end of a line. */
function parseHex(text: string, where: string): Buffer {
  const digits = text.split('\n').map((line) => line.replace(/#.*$/, '')).join('').replace(/\s+/g, '');
  assert.match(digits, /^(?:[0-9a-fA-F]{2})*$/, `${where}: hex must be whole bytes`);
  return Buffer.from(digits, 'hex');
}

function parseVectorBlock(body: string, index: number): Vector {
  // A line "key: value" starts a key; indented lines continue the value of the key above.
  const raw = new Map<string, string>();
  let current: string | null = null;
  for (const line of body.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^([a-z-]+):(.*)$/.exec(line);
    if (m && !/^\s/.test(line)) {
      current = m[1]!;
      assert.ok(KEYS.has(current), `vector block ${index}: unknown key "${current}"`);
      assert.ok(!raw.has(current), `vector block ${index}: key "${current}" appears twice`);
      raw.set(current, m[2]!.trim());
    } else {
      assert.ok(current !== null && /^\s/.test(line), `vector block ${index}: line "${line}" belongs to no key`);
      raw.set(current, `${raw.get(current)}\n${line.trim()}`);
    }
  }
  const name = raw.get('name');
  assert.ok(name, `vector block ${index} has no name`);
  const kind = (raw.get('kind') ?? 'frames') as Vector['kind'];
  assert.ok(['frames', 'fields', 'record'].includes(kind), `${name}: unknown kind ${kind}`);
  assert.ok(raw.has('hex'), `${name}: no hex`);
  assert.ok(raw.has('expect') !== raw.has('error'), `${name}: needs exactly one of expect and error`);
  const v: Vector = {
    name,
    kind,
    bytes: parseHex(raw.get('hex')!, name),
    pending: raw.has('pending') ? Number(raw.get('pending')) : 0,
    maxFrameSize: raw.has('max-frame-size') ? Number(raw.get('max-frame-size')) : DEFAULT_SETTINGS.maxFrameSize,
  };
  if (kind === 'frames') {
    const start = raw.get('start');
    assert.ok(start === 'preface' || start === 'frames', `${name}: start must be preface or frames`);
    v.start = start;
  }
  if (raw.has('canonical')) v.canonical = parseHex(raw.get('canonical')!, name);
  if (raw.has('expect')) v.expect = JSON.parse(raw.get('expect')!);
  if (raw.has('error')) {
    const code = raw.get('error')!;
    assert.ok(code in ERRORS, `${name}: ${code} is not in the error registry`);
    v.error = code as ErrorCode;
  }
  if (raw.has('scope')) {
    const scope = raw.get('scope');
    assert.ok(scope === 'connection' || scope === 'stream', `${name}: scope must be connection or stream`);
    v.scope = scope;
  }
  if (raw.has('schema')) v.schema = JSON.parse(raw.get('schema')!) as Schema;
  assert.ok(kind !== 'record' || v.schema, `${name}: a record vector needs a schema`);
  assert.ok(Number.isInteger(v.pending) && v.pending >= 0 && v.pending <= v.bytes.length, `${name}: bad pending`);
  return v;
}

function readVectors(spec: string): Vector[] {
  const blocks = [...spec.matchAll(/^```vector\n([\s\S]*?)^```$/gm)];
  return blocks.map((m, i) => parseVectorBlock(m[1]!, i));
}

// ---- Frames as the spec's JSON shows them ----

const SETTING_NAME_BY_KEY = new Map<keyof Settings, string>(
  Object.entries(Setting).map(([name, id]) => [SETTING_KEYS[id]!, name]),
);
const SETTING_KEY_BY_NAME = new Map([...SETTING_NAME_BY_KEY].map(([key, name]) => [name, key]));
const TYPE_NAME = new Map<number, string>(Object.entries(FrameType).map(([name, type]) => [type, name]));

const END_STREAM = 0x01;
const hex = (b: Buffer) => b.toString('hex');
const fieldsJson = (b: Buffer, streamId: number) => [...decodeFields(b, streamId)].map(([tag, v]) => [tag, hex(v)]);
const fieldsFromJson = (list: [number, string][]) => encodeFields(list.map(([tag, v]) => [tag, Buffer.from(v, 'hex')] as const));

/** What a receiver makes of one frame, in the spec's JSON shape; payload errors throw WireError. */
function describeFrame(f: RawFrame): Record<string, unknown> {
  const type = TYPE_NAME.get(f.type);
  const end = (f.flags & END_STREAM) !== 0;
  const stream = f.streamId;
  switch (f.type) {
    case FrameType.HELLO: {
      const hello = parseHello(f.payload);
      const settings: Record<string, number> = {};
      for (const [key, value] of Object.entries(hello.settings)) settings[SETTING_NAME_BY_KEY.get(key as keyof Settings)!] = value;
      const out: Record<string, unknown> = { type, stream, settings };
      const extensions: Record<string, string> = {};
      for (const [tag, value] of hello.extensions) {
        if (tag === HelloExtension.AGENT) out.agent = value.toString('utf8');
        else extensions[`0x${tag.toString(16).padStart(4, '0')}`] = hex(value);
      }
      if (Object.keys(extensions).length > 0) out.extensions = extensions;
      return out;
    }
    case FrameType.OPEN: {
      const open = parseOpen(f.payload, stream);
      return { type, stream, end, op: open.op, opVersion: open.opVersion, header: fieldsJson(open.header, stream) };
    }
    case FrameType.REPLY:
      return { type, stream, end, header: fieldsJson(f.payload, stream) };
    case FrameType.DATA:
      return { type, stream, end, data: hex(f.payload) };
    case FrameType.CREDIT:
      return { type, stream, increment: parseCredit(f.payload, stream) };
    case FrameType.RESET: {
      const r = parseReset(f.payload, stream);
      return { type, stream, code: r.code, codeValue: r.codeValue, finalSize: r.finalSize, reason: r.reason };
    }
    case FrameType.PING:
    case FrameType.PONG:
      return { type, stream, opaque: hex(f.payload) };
    case FrameType.GOAWAY: {
      const g = parseGoAway(f.payload);
      return { type, stream, lastStreamId: g.lastStreamId, code: g.code, codeValue: g.codeValue, reason: g.reason };
    }
    default:
      assert.ok(!isKnownFrameType(f.type));
      return { type: 'UNKNOWN', frameType: f.type, flags: f.flags, stream, payload: hex(f.payload) };
  }
}

/** The bytes the codec's encoders produce for one frame of the spec's JSON. */
function encodeFrameJson(j: any): Buffer {
  switch (j.type) {
    case 'HELLO': {
      const settings: Partial<Settings> = {};
      for (const [name, value] of Object.entries(j.settings as Record<string, number>)) {
        const key = SETTING_KEY_BY_NAME.get(name);
        assert.ok(key, `unknown setting name ${name}`);
        settings[key] = value;
      }
      const extensions: [number, Buffer][] = [];
      if (j.agent !== undefined) extensions.push([HelloExtension.AGENT, Buffer.from(j.agent, 'utf8')]);
      for (const [tag, value] of Object.entries((j.extensions ?? {}) as Record<string, string>)) extensions.push([Number(tag), Buffer.from(value, 'hex')]);
      return encodeHello(settings, extensions);
    }
    case 'OPEN': return encodeOpen(j.stream, j.op, j.opVersion, fieldsFromJson(j.header), j.end);
    case 'REPLY': return encodeReply(j.stream, fieldsFromJson(j.header), j.end);
    case 'DATA': return encodeData(j.stream, Buffer.from(j.data, 'hex'), j.end);
    case 'CREDIT': return encodeCredit(j.stream, j.increment);
    case 'RESET': return encodeReset(j.stream, j.codeValue, j.finalSize, j.reason);
    case 'PING': return encodePing(Buffer.from(j.opaque, 'hex'));
    case 'PONG': return encodePong(Buffer.from(j.opaque, 'hex'));
    case 'GOAWAY': return encodeGoAway(j.lastStreamId, j.codeValue, j.reason);
    case 'UNKNOWN': return encodeFrame(j.frameType, j.flags, j.stream, Buffer.from(j.payload, 'hex'));
    default: throw new Error(`no encoder for frame type ${j.type}`);
  }
}

interface Decoded {
  frames: Record<string, unknown>[];
  pending: number;
}

/** Decodes a vector's bytes fed as `chunks`; `pending` counts the bytes that belong to no complete frame or preface. */
function decodeChunks(v: Vector, chunks: Buffer[]): Decoded {
  const decoder = new FrameDecoder({ maxFrameSize: v.maxFrameSize, expectPreface: v.start === 'preface' });
  const frames: Record<string, unknown>[] = [];
  let pushed = 0;
  let complete = 0;
  for (const chunk of chunks) {
    pushed += chunk.length;
    decoder.push(chunk, (f) => {
      frames.push(describeFrame(f));
      complete += FRAME_HEADER_LENGTH + f.payload.length;
    });
  }
  if (v.start === 'preface' && decoder.bytesConsumed >= PREFACE_LENGTH) complete += PREFACE_LENGTH;
  return { frames, pending: pushed - complete };
}

/** Whole; in two pieces at every boundary, empty pieces included; one byte at a time. */
function splits(bytes: Buffer): { label: string; chunks: Buffer[] }[] {
  const out = [{ label: 'whole', chunks: [bytes] }];
  for (let i = 0; i <= bytes.length; i++) out.push({ label: `split at ${i}`, chunks: [bytes.subarray(0, i), bytes.subarray(i)] });
  out.push({ label: 'one byte at a time', chunks: [...bytes].map((b) => Buffer.from([b])) });
  return out;
}

function assertWireError(v: Vector, label: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof WireError, `${v.name} (${label}): expected WireError ${v.error}, got ${String(err)}`);
    assert.equal(err.code, v.error, `${v.name} (${label}): ${err.message}`);
    if (v.scope) assert.equal(err.streamId === 0 ? 'connection' : 'stream', v.scope, `${v.name} (${label}): scope`);
    return true;
  };
}

// ---- Records: bytes fields appear as hex in the JSON ----

function toJson(type: FieldType, value: unknown): unknown {
  if (typeof type === 'object') {
    if ('list' in type) return (value as unknown[]).map((item) => toJson(type.list, item));
    return recordToJson(type.record, value as Record<string, unknown>);
  }
  return type === 'bytes' ? hex(value as Buffer) : value;
}
function recordToJson(schema: Schema, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) if (value[name] !== undefined) out[name] = toJson(spec.type, value[name]);
  return out;
}
function fromJson(type: FieldType, value: unknown): unknown {
  if (typeof type === 'object') {
    if ('list' in type) return (value as unknown[]).map((item) => fromJson(type.list, item));
    return recordFromJson(type.record, value as Record<string, unknown>);
  }
  return type === 'bytes' ? Buffer.from(value as string, 'hex') : value;
}
function recordFromJson(schema: Schema, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) if (value[name] !== undefined) out[name] = fromJson(spec.type, value[name]);
  return out;
}

// ---- The tests ----

const vectors = readVectors(SPEC);

describe('wire-spec.md test vectors', () => {
  test('the spec holds vectors with unique names', () => {
    assert.ok(vectors.length >= 40, `only ${vectors.length} vectors found`);
    const names = vectors.map((v) => v.name);
    assert.equal(new Set(names).size, names.length, 'vector names must be unique');
  });

  test('every frame type has a vector, so the spec cannot silently lose coverage', () => {
    const covered = new Set<string>();
    for (const v of vectors) {
      if (v.kind !== 'frames' || !Array.isArray(v.expect)) continue;
      for (const f of v.expect as { type: string }[]) covered.add(f.type);
    }
    for (const name of Object.keys(FrameType)) assert.ok(covered.has(name), `no positive vector decodes a ${name} frame`);
    assert.ok(covered.has('UNKNOWN'), 'no vector shows an unknown or grease frame being skipped');
  });

  test('the spec keeps its required negative and edge vectors', () => {
    // Each of these guards a rule another implementation is most likely to get wrong.
    const required = [
      'preface', 'hello-empty', 'hello-settings-agent', 'open', 'open-end-stream', 'reply', 'data', 'data-empty-end-stream',
      'credit-connection', 'credit-stream', 'reset', 'ping', 'pong', 'goaway-drain', 'grease-frame', 'data-unknown-flag',
      'truncated-header', 'truncated-payload', 'oversized', 'critical-flag', 'ping-on-stream', 'data-on-stream-0',
      'ping-7-bytes', 'credit-5-bytes', 'credit-zero', 'bad-preface', 'version-mismatch', 'second-hello',
      'first-frame-not-hello', 'fields', 'fields-duplicate', 'fields-truncated-header', 'fields-truncated-value',
    ];
    const names = new Set(vectors.map((v) => v.name));
    for (const name of required) assert.ok(names.has(name), `vector ${name} is missing from the spec`);
  });

  for (const v of vectors) {
    if (v.kind === 'frames' && v.expect !== undefined) {
      test(`${v.name}: decodes whole, split anywhere and byte by byte, and encodes back`, () => {
        for (const { label, chunks } of splits(v.bytes)) {
          const got = decodeChunks(v, chunks);
          assert.deepEqual(got.frames, v.expect, `${v.name} (${label})`);
          assert.equal(got.pending, v.pending, `${v.name} (${label}): bytes left waiting`);
        }
        const frames = (v.expect as unknown[]).map(encodeFrameJson);
        const complete = v.bytes.subarray(0, v.bytes.length - v.pending);
        const prefix = v.start === 'preface' && complete.length > 0 ? [encodePreface()] : [];
        const encoded = Buffer.concat([...prefix, ...frames]);
        assert.equal(hex(encoded), hex(v.canonical ?? complete), `${v.name}: encoding`);
        if (v.canonical) assert.deepEqual(decodeChunks(v, [v.canonical]).frames, v.expect, `${v.name}: canonical bytes decode alike`);
      });
    } else if (v.kind === 'frames') {
      test(`${v.name}: fails with ${v.error} whole, split anywhere and byte by byte`, () => {
        for (const { label, chunks } of splits(v.bytes)) {
          assert.throws(() => decodeChunks(v, chunks), assertWireError(v, label));
        }
      });
    } else if (v.kind === 'fields') {
      test(`${v.name}: tagged field list`, () => {
        if (v.error) {
          assert.throws(() => decodeFields(v.bytes), assertWireError(v, 'whole'));
          return;
        }
        assert.deepEqual(fieldsJson(v.bytes, 0), v.expect);
        assert.equal(hex(fieldsFromJson(v.expect as [number, string][])), hex(v.canonical ?? v.bytes));
      });
    } else {
      test(`${v.name}: record`, () => {
        const schema = v.schema!;
        if (v.error) {
          assert.throws(() => decodeRecord(schema, v.bytes), assertWireError(v, 'whole'));
          return;
        }
        assert.deepEqual(recordToJson(schema, decodeRecord(schema, v.bytes) as Record<string, unknown>), v.expect);
        const encoded = encodeRecord(schema, recordFromJson(schema, v.expect as Record<string, unknown>));
        assert.equal(hex(encoded), hex(v.canonical ?? v.bytes));
      });
    }
  }
});

// ---- The registries printed in the spec agree with the code ----

/** The body rows of the one table in the spec whose header row begins with `header`, cells trimmed, backticks dropped. */
function tableRows(header: string): string[][] {
  const lines = SPEC.split('\n');
  const starts = lines.flatMap((line, i) => (line.startsWith(header) ? [i] : []));
  assert.equal(starts.length, 1, `exactly one table headed "${header}" expected`);
  const rows: string[][] = [];
  for (let i = starts[0]! + 2; i < lines.length && lines[i]!.startsWith('|'); i++) {
    rows.push(lines[i]!.split('|').slice(1, -1).map((cell) => cell.trim().replace(/^`|`$/g, '')));
  }
  return rows;
}

describe('wire-spec.md registries', () => {
  test('frame types in §3.3 match the codec', () => {
    const rows = tableRows('| Frame type |');
    const spec = Object.fromEntries(rows.map((r) => [r[0], Number(r[1])]));
    assert.deepEqual(spec, { ...FrameType });
  });

  test('settings in §6 match the codec: ids, defaults and ranges', () => {
    const rows = tableRows('| Setting |');
    assert.equal(rows.length, Object.keys(Setting).length);
    for (const [name, id, def, min, max] of rows) {
      const num = (s: string) => Number(s!.replace(/[ _,]/g, ''));
      assert.equal(Setting[name as keyof typeof Setting], num(id!), `${name} id`);
      const key = SETTING_KEYS[num(id!)]!;
      assert.equal(DEFAULT_SETTINGS[key], num(def!), `${name} default`);
      assert.deepEqual([num(min!), num(max!)], [...SETTING_RANGES[key]], `${name} range`);
    }
  });

  test('the error registry in §8 matches the codec: values, scopes and retriability', () => {
    const rows = tableRows('| Error code |');
    const spec = Object.fromEntries(rows.map(([name, value, scope, retriable]) =>
      [name, { value: Number(value), scope, retriable: retriable === 'yes' }]));
    assert.deepEqual(spec, JSON.parse(JSON.stringify(ERRORS)));
  });
});
