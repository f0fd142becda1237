// Tagged fields (spec §4): the one payload encoding for headers, HELLO and operation bodies.
// A field is tag u16 | length u32 | value; fields appear in strictly ascending tag order, so every
// value has exactly one encoding, and a reader skips tags it does not know.

import { isUtf8 } from 'node:buffer';
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

// ---- The record codec ----
// Records are the hot path of every request (a STAT reply of a file carries its chunk list, each with its
// replicas), so each schema is compiled once into its fields sorted by tag, encoding measures first and then
// writes into one buffer, and decoding walks the field list once without building a Map. The bytes are
// exactly those of encodeFields over the fields' encoded values, and errors are those of decodeFields
// followed by a check of each field in declaration order.

const K_U8 = 0, K_U16 = 1, K_U32 = 2, K_U64 = 3, K_BOOL = 4, K_STRING = 5, K_BYTES = 6, K_LIST = 7, K_RECORD = 8;
const KIND_NAME = ['u8', 'u16', 'u32', 'u64'] as const;
const INT_WIDTH = [1, 2, 4, 8] as const;
const INT_MAX = [0xff, 0xffff, 0xffff_ffff, Number.MAX_SAFE_INTEGER] as const;
const TWO_32 = 2 ** 32;

interface CompiledType {
  readonly kind: number;
  /** The item type of a list. */
  readonly item?: CompiledType;
  /** The schema of a record. */
  readonly schema?: CompiledSchema;
}

interface CompiledField {
  readonly name: string;
  readonly tag: number;
  readonly optional: boolean;
  readonly type: CompiledType;
  /** Position in the schema's declaration order, where decoded values are checked and set. */
  readonly index: number;
}

interface CompiledSchema {
  /** Fields in ascending tag order, the order they take on the wire. */
  readonly byTag: readonly CompiledField[];
  /** Fields in declaration order. */
  readonly byName: readonly CompiledField[];
  /** Why the schema cannot be encoded (a tag that is not a u16, or one used twice), as encodeFields would say. */
  readonly problem?: string;
}

const compiledSchemas = new WeakMap<Schema, CompiledSchema>();

function compileSchema(schema: Schema): CompiledSchema {
  let compiled = compiledSchemas.get(schema);
  if (compiled !== undefined) return compiled;
  const byName = Object.entries(schema).map(([name, spec], index): CompiledField => (
    { name, tag: spec.tag, optional: spec.optional === true, type: compileType(spec.type), index }
  ));
  const byTag = [...byName].sort((a, b) => a.tag - b.tag);
  let problem: string | undefined;
  for (const [i, field] of byTag.entries()) {
    if (!Number.isInteger(field.tag) || field.tag < 0 || field.tag > 0xffff) problem ??= `field tag ${field.tag} is not a u16`;
    else if (i > 0 && byTag[i - 1]!.tag === field.tag) problem ??= `field tag ${field.tag} appears twice`;
  }
  compiled = problem === undefined ? { byTag, byName } : { byTag, byName, problem };
  compiledSchemas.set(schema, compiled);
  return compiled;
}

function compileType(type: FieldType): CompiledType {
  if (typeof type === 'object') {
    if ('list' in type) return { kind: K_LIST, item: compileType(type.list) };
    return { kind: K_RECORD, schema: compileSchema(type.record) };
  }
  switch (type) {
    case 'u8': return { kind: K_U8 };
    case 'u16': return { kind: K_U16 };
    case 'u32': return { kind: K_U32 };
    case 'u64': return { kind: K_U64 };
    case 'bool': return { kind: K_BOOL };
    case 'string': return { kind: K_STRING };
    case 'bytes': return { kind: K_BYTES };
  }
}

// -- Encoding: a measuring pass validates every value and notes the size of each string, list and record
// in the order the writing pass meets them, so nothing is measured twice and the output is allocated once.

interface EncodeState {
  readonly sizes: number[];
  next: number;
}

function measureRecord(schema: CompiledSchema, value: Record<string, unknown>, sizes: number[]): number {
  // Validation follows declaration order, so the first bad field reported is the one it always was.
  for (const field of schema.byName) {
    if (value[field.name] === undefined && !field.optional) throw new TypeError(`field ${field.name} is required`);
  }
  if (schema.problem !== undefined) throw new RangeError(schema.problem);
  const slot = sizes.length;
  sizes.push(0);
  let size = 0;
  for (const field of schema.byTag) {
    const v = value[field.name];
    if (v === undefined) continue;
    size += FIELD_OVERHEAD + measureValue(field.type, v, field.name, -1, sizes);
  }
  sizes[slot] = size;
  return size;
}

/** A field's name for messages: `name`, or `name[index]` for an item of a list. */
function label(name: string, index: number): string {
  return index < 0 ? name : `${name}[${index}]`;
}

function measureValue(type: CompiledType, value: unknown, name: string, index: number, sizes: number[]): number {
  switch (type.kind) {
    case K_U8: case K_U16: case K_U32: case K_U64: {
      const max = INT_MAX[type.kind as 0 | 1 | 2 | 3];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
        throw new RangeError(`field ${label(name, index)} must be an integer in 0..${max}, got ${String(value)}`);
      }
      return INT_WIDTH[type.kind as 0 | 1 | 2 | 3];
    }
    case K_BOOL:
      if (typeof value !== 'boolean') throw new TypeError(`field ${label(name, index)} must be a boolean`);
      return 1;
    case K_STRING: {
      if (typeof value !== 'string') throw new TypeError(`field ${label(name, index)} must be a string`);
      const size = Buffer.byteLength(value, 'utf8');
      sizes.push(size);
      return size;
    }
    case K_BYTES:
      if (!(value instanceof Uint8Array)) throw new TypeError(`field ${label(name, index)} must be bytes`);
      return value.length;
    case K_LIST: {
      if (!Array.isArray(value)) throw new TypeError(`field ${label(name, index)} must be an array`);
      const slot = sizes.length;
      sizes.push(0);
      let size = 4;
      // An item is named by its list and its index, joined only for an error message or a list within a list.
      const list = label(name, index);
      const nested = type.item!.kind === K_LIST;
      for (let i = 0; i < value.length; i++) {
        size += 4 + (nested ? measureValue(type.item!, value[i], `${list}[${i}]`, -1, sizes) : measureValue(type.item!, value[i], list, i, sizes));
      }
      sizes[slot] = size;
      return size;
    }
    default:
      return measureRecord(type.schema!, value as Record<string, unknown>, sizes);
  }
}

/** The encoded size of a value whose measure, if it has one, is the state's next. */
function sizeOf(type: CompiledType, value: unknown, state: EncodeState): number {
  switch (type.kind) {
    case K_U8: case K_U16: case K_U32: case K_U64: return INT_WIDTH[type.kind as 0 | 1 | 2 | 3];
    case K_BOOL: return 1;
    case K_BYTES: return (value as Uint8Array).length;
    default: return state.sizes[state.next]!;
  }
}

function writeRecord(schema: CompiledSchema, value: Record<string, unknown>, out: Buffer, at: number, state: EncodeState): number {
  state.next++; // the record's own size
  for (const field of schema.byTag) {
    const v = value[field.name];
    if (v === undefined) continue;
    const size = sizeOf(field.type, v, state);
    out.writeUInt16BE(field.tag, at);
    out.writeUInt32BE(size, at + 2);
    at = writeValue(field.type, v, out, at + FIELD_OVERHEAD, state);
  }
  return at;
}

function writeValue(type: CompiledType, value: unknown, out: Buffer, at: number, state: EncodeState): number {
  switch (type.kind) {
    case K_U8: out[at] = value as number; return at + 1;
    case K_U16: out.writeUInt16BE(value as number, at); return at + 2;
    case K_U32: out.writeUInt32BE(value as number, at); return at + 4;
    case K_U64: {
      const v = value as number;
      out.writeUInt32BE(Math.floor(v / TWO_32), at);
      out.writeUInt32BE(v >>> 0, at + 4);
      return at + 8;
    }
    case K_BOOL: out[at] = value ? 1 : 0; return at + 1;
    case K_STRING: {
      const size = state.sizes[state.next++]!;
      out.write(value as string, at, size, 'utf8');
      return at + size;
    }
    case K_BYTES: {
      const b = value as Uint8Array;
      out.set(b, at);
      return at + b.length;
    }
    case K_LIST: {
      const items = value as unknown[];
      state.next++; // the list's own size
      out.writeUInt32BE(items.length, at);
      at += 4;
      for (const item of items) {
        out.writeUInt32BE(sizeOf(type.item!, item, state), at);
        at = writeValue(type.item!, item, out, at + 4, state);
      }
      return at;
    }
    default:
      return writeRecord(type.schema!, value as Record<string, unknown>, out, at, state);
  }
}

export function encodeRecord<S extends Schema>(schema: S, value: Decoded<S> | Record<string, unknown>): Buffer {
  const compiled = compileSchema(schema);
  // A schema without fields (many requests and replies) always encodes to nothing.
  if (compiled.byName.length === 0) return EMPTY_RECORD;
  const state: EncodeState = { sizes: [], next: 0 };
  const size = measureRecord(compiled, value as Record<string, unknown>, state.sizes);
  const out = Buffer.allocUnsafe(size);
  writeRecord(compiled, value as Record<string, unknown>, out, 0, state);
  return out;
}

const EMPTY_RECORD = Buffer.alloc(0);

// -- Decoding

function badField(name: string, index: number, why: string): WireError {
  return new WireError('PROTOCOL_ERROR', `field ${label(name, index)}: ${why}`);
}

function decodeValue(type: CompiledType, buf: Buffer, start: number, end: number, name: string, index: number): unknown {
  const length = end - start;
  switch (type.kind) {
    case K_U8: case K_U16: case K_U32: case K_U64: {
      const width = INT_WIDTH[type.kind as 0 | 1 | 2 | 3];
      if (length !== width) throw badField(name, index, `${KIND_NAME[type.kind as 0 | 1 | 2 | 3]} needs ${width} bytes, got ${length}`);
      switch (width) {
        case 1: return buf[start]!;
        case 2: return buf.readUInt16BE(start);
        case 4: return buf.readUInt32BE(start);
      }
      const high = buf.readUInt32BE(start);
      // 2^53-1 is the largest integer a number holds exactly: its high word is 2^21-1.
      if (high > 0x1f_ffff) throw badField(name, index, `u64 ${buf.readBigUInt64BE(start)} exceeds 2^53-1`);
      return high * TWO_32 + buf.readUInt32BE(start + 4);
    }
    case K_BOOL:
      if (length !== 1 || buf[start]! > 1) throw badField(name, index, 'bool must be one byte, 0 or 1');
      return buf[start] === 1;
    case K_STRING:
      // Strings name things (paths above all): two invalid sequences replaced by U+FFFD would name
      // the same file, so they are refused rather than repaired.
      if (!isUtf8(buf.subarray(start, end))) throw badField(name, index, 'string is not valid UTF-8');
      return buf.toString('utf8', start, end);
    case K_BYTES:
      return Buffer.from(buf.subarray(start, end));
    case K_LIST: {
      if (length < 4) throw badField(name, index, 'list count truncated');
      const count = buf.readUInt32BE(start);
      // Each item costs at least 4 bytes, so a count the bytes cannot hold is rejected before any allocation.
      if (count > (length - 4) / 4) throw badField(name, index, `list declares ${count} items in ${length} bytes`);
      const list = label(name, index);
      const nested = type.item!.kind === K_LIST;
      const items: unknown[] = [];
      let at = start + 4;
      for (let i = 0; i < count; i++) {
        if (end - at < 4) throw badField(list, -1, `item ${i} length truncated`);
        const itemLength = buf.readUInt32BE(at);
        if (itemLength > end - at - 4) throw badField(list, -1, `item ${i} declares ${itemLength} bytes, ${end - at - 4} remain`);
        items.push(nested
          ? decodeValue(type.item!, buf, at + 4, at + 4 + itemLength, `${list}[${i}]`, -1)
          : decodeValue(type.item!, buf, at + 4, at + 4 + itemLength, list, i));
        at += 4 + itemLength;
      }
      if (at !== end) throw badField(list, -1, `${end - at} bytes after the last list item`);
      return items;
    }
    default:
      return decodeRecordAt(type.schema!, buf, start, end);
  }
}

function decodeRecordAt(schema: CompiledSchema, buf: Buffer, start: number, end: number): Record<string, unknown> {
  const fields = schema.byTag;
  // Where each field's value starts and ends, by declaration index; -1 while the field is absent.
  const found: number[] = [];
  for (let i = 2 * fields.length; i > 0; i--) found.push(-1);
  let at = start;
  let last = -1;
  let next = 0;
  while (at < end) {
    const offset = at - start;
    if (end - at < FIELD_OVERHEAD) {
      throw new WireError('PROTOCOL_ERROR', `field header truncated at offset ${offset}: ${end - at} of 6 bytes`, 0);
    }
    const tag = buf.readUInt16BE(at);
    const length = buf.readUInt32BE(at + 2);
    if (tag <= last) {
      throw new WireError('PROTOCOL_ERROR', `field tag 0x${tag.toString(16)} at offset ${offset} is not above the previous tag 0x${last.toString(16)}`, 0);
    }
    if (length > end - at - FIELD_OVERHEAD) {
      throw new WireError('PROTOCOL_ERROR', `field 0x${tag.toString(16)} at offset ${offset} declares ${length} bytes, only ${end - at - FIELD_OVERHEAD} remain`, 0);
    }
    // Tags ascend on the wire and in `fields`, so one pointer walks both; unknown tags are skipped.
    while (next < fields.length && fields[next]!.tag < tag) next++;
    for (let i = next; i < fields.length && fields[i]!.tag === tag; i++) {
      found[2 * fields[i]!.index] = at + FIELD_OVERHEAD;
      found[2 * fields[i]!.index + 1] = at + FIELD_OVERHEAD + length;
    }
    at += FIELD_OVERHEAD + length;
    last = tag;
  }
  const out: Record<string, unknown> = {};
  for (const field of schema.byName) {
    const valueStart = found[2 * field.index]!;
    if (valueStart < 0) {
      if (!field.optional) throw new WireError('PROTOCOL_ERROR', `required field ${field.name} (tag ${field.tag}) is missing`);
      continue;
    }
    out[field.name] = decodeValue(field.type, buf, valueStart, found[2 * field.index + 1]!, field.name, -1);
  }
  return out;
}

export function decodeRecord<S extends Schema>(schema: S, buf: Buffer): Decoded<S> {
  return decodeRecordAt(compileSchema(schema), buf, 0, buf.length) as Decoded<S>;
}
