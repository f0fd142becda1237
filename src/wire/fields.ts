// Tagged fields (spec §4): the one payload encoding for headers, HELLO and operation bodies.
// A field is tag u16 | length u32 | value; fields appear in strictly ascending tag order, so every
// value has exactly one encoding, and a reader skips tags it does not know.

import { WireError } from './errors.js';

export type FieldList = Map<number, Buffer>;

const FIELD_OVERHEAD = 6;

export function encodeFields(fields: Iterable<readonly [number, Buffer]>): Buffer {
  const sorted = [...fields].sort((a, b) => a[0] - b[0]);
  let size = 0;
  for (const [, value] of sorted) size += FIELD_OVERHEAD + value.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  let last = -1;
  for (const [tag, value] of sorted) {
    if (!Number.isInteger(tag) || tag < 0 || tag > 0xffff) throw new RangeError(`field tag ${tag} is not a u16`);
    if (tag === last) throw new RangeError(`field tag ${tag} appears twice`);
    last = tag;
    out.writeUInt16BE(tag, at);
    out.writeUInt32BE(value.length, at + 2);
    value.copy(out, at + FIELD_OVERHEAD);
    at += FIELD_OVERHEAD + value.length;
  }
  return out;
}

/** Parses a field list; values are slices of `buf`, not copies. */
export function decodeFields(buf: Buffer, streamId = 0): FieldList {
  const fields: FieldList = new Map();
  let at = 0;
  let last = -1;
  while (at < buf.length) {
    if (buf.length - at < FIELD_OVERHEAD) {
      throw new WireError('PROTOCOL_ERROR', `field header truncated at offset ${at}: ${buf.length - at} of 6 bytes`, streamId);
    }
    const tag = buf.readUInt16BE(at);
    const length = buf.readUInt32BE(at + 2);
    if (tag <= last) {
      throw new WireError('PROTOCOL_ERROR', `field tag 0x${tag.toString(16)} at offset ${at} is not above the previous tag 0x${last.toString(16)}`, streamId);
    }
    if (length > buf.length - at - FIELD_OVERHEAD) {
      throw new WireError('PROTOCOL_ERROR', `field 0x${tag.toString(16)} at offset ${at} declares ${length} bytes, only ${buf.length - at - FIELD_OVERHEAD} remain`, streamId);
    }
    fields.set(tag, buf.subarray(at + FIELD_OVERHEAD, at + FIELD_OVERHEAD + length));
    at += FIELD_OVERHEAD + length;
    last = tag;
  }
  return fields;
}

// ---- Typed schemas over field lists ----

export type FieldType =
  | 'u8' | 'u16' | 'u32' | 'u64' | 'bool' | 'string' | 'bytes'
  | { list: FieldType }
  | { record: Schema };

export interface FieldSpec {
  readonly tag: number;
  readonly type: FieldType;
  readonly optional?: boolean;
}
export type Schema = Readonly<Record<string, FieldSpec>>;

type ValueOf<T extends FieldType> = T extends 'u8' | 'u16' | 'u32' | 'u64' ? number
  : T extends 'bool' ? boolean
  : T extends 'string' ? string
  : T extends 'bytes' ? Buffer
  : T extends { list: infer I extends FieldType } ? ValueOf<I>[]
  : T extends { record: infer S extends Schema } ? Decoded<S>
  : never;

type OptionalKeys<S extends Schema> = { [K in keyof S]: S[K]['optional'] extends true ? K : never }[keyof S];
type RequiredKeys<S extends Schema> = Exclude<keyof S, OptionalKeys<S>>;

/** The plain object a schema describes. */
export type Decoded<S extends Schema> =
  { [K in RequiredKeys<S>]: ValueOf<S[K]['type']> } & { [K in OptionalKeys<S>]?: ValueOf<S[K]['type']> };

const INT_WIDTH = { u8: 1, u16: 2, u32: 4, u64: 8 } as const;

function encodeValue(type: FieldType, value: unknown, name: string): Buffer {
  if (typeof type === 'object') {
    if ('list' in type) {
      if (!Array.isArray(value)) throw new TypeError(`field ${name} must be an array`);
      const items = value.map((item, i) => encodeValue(type.list, item, `${name}[${i}]`));
      let size = 4;
      for (const item of items) size += 4 + item.length;
      const out = Buffer.allocUnsafe(size);
      out.writeUInt32BE(items.length, 0);
      let at = 4;
      for (const item of items) {
        out.writeUInt32BE(item.length, at);
        item.copy(out, at + 4);
        at += 4 + item.length;
      }
      return out;
    }
    return encodeRecord(type.record, value as Record<string, unknown>);
  }
  switch (type) {
    case 'u8': case 'u16': case 'u32': case 'u64': {
      const width = INT_WIDTH[type];
      const max = width === 8 ? Number.MAX_SAFE_INTEGER : 2 ** (8 * width) - 1;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
        throw new RangeError(`field ${name} must be an integer in 0..${max}, got ${String(value)}`);
      }
      const out = Buffer.allocUnsafe(width);
      if (width === 8) out.writeBigUInt64BE(BigInt(value));
      else out.writeUIntBE(value, 0, width);
      return out;
    }
    case 'bool':
      if (typeof value !== 'boolean') throw new TypeError(`field ${name} must be a boolean`);
      return Buffer.from([value ? 1 : 0]);
    case 'string':
      if (typeof value !== 'string') throw new TypeError(`field ${name} must be a string`);
      return Buffer.from(value, 'utf8');
    case 'bytes':
      if (!Buffer.isBuffer(value) && !(value instanceof Uint8Array)) throw new TypeError(`field ${name} must be bytes`);
      return Buffer.isBuffer(value) ? value : Buffer.from(value);
  }
}

function decodeValue(type: FieldType, buf: Buffer, name: string): unknown {
  const bad = (why: string) => new WireError('PROTOCOL_ERROR', `field ${name}: ${why}`);
  if (typeof type === 'object') {
    if ('list' in type) {
      if (buf.length < 4) throw bad('list count truncated');
      const count = buf.readUInt32BE(0);
      // Each item costs at least 4 bytes, so a count the bytes cannot hold is rejected before any allocation.
      if (count > (buf.length - 4) / 4) throw bad(`list declares ${count} items in ${buf.length} bytes`);
      const items: unknown[] = [];
      let at = 4;
      for (let i = 0; i < count; i++) {
        if (buf.length - at < 4) throw bad(`item ${i} length truncated`);
        const length = buf.readUInt32BE(at);
        if (length > buf.length - at - 4) throw bad(`item ${i} declares ${length} bytes, ${buf.length - at - 4} remain`);
        items.push(decodeValue(type.list, buf.subarray(at + 4, at + 4 + length), `${name}[${i}]`));
        at += 4 + length;
      }
      if (at !== buf.length) throw bad(`${buf.length - at} bytes after the last list item`);
      return items;
    }
    return decodeRecord(type.record, buf);
  }
  switch (type) {
    case 'u8': case 'u16': case 'u32': case 'u64': {
      const width = INT_WIDTH[type];
      if (buf.length !== width) throw bad(`${type} needs ${width} bytes, got ${buf.length}`);
      if (width < 8) return buf.readUIntBE(0, width);
      const big = buf.readBigUInt64BE(0);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`u64 ${big} exceeds 2^53-1`);
      return Number(big);
    }
    case 'bool':
      if (buf.length !== 1 || buf[0]! > 1) throw bad('bool must be one byte, 0 or 1');
      return buf[0] === 1;
    case 'string':
      return buf.toString('utf8');
    case 'bytes':
      return Buffer.from(buf);
  }
}

export function encodeRecord<S extends Schema>(schema: S, value: Decoded<S> | Record<string, unknown>): Buffer {
  const fields: [number, Buffer][] = [];
  for (const [name, spec] of Object.entries(schema)) {
    const v = (value as Record<string, unknown>)[name];
    if (v === undefined) {
      if (!spec.optional) throw new TypeError(`field ${name} is required`);
      continue;
    }
    fields.push([spec.tag, encodeValue(spec.type, v, name)]);
  }
  return encodeFields(fields);
}

export function decodeRecord<S extends Schema>(schema: S, buf: Buffer): Decoded<S> {
  const fields = decodeFields(buf);
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    const raw = fields.get(spec.tag);
    if (raw === undefined) {
      if (!spec.optional) throw new WireError('PROTOCOL_ERROR', `required field ${name} (tag ${spec.tag}) is missing`);
      continue;
    }
    out[name] = decodeValue(spec.type, raw, name);
  }
  return out as Decoded<S>;
}
