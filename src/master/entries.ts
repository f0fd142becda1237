// The log entries of the master's metadata state machine: every durable change is one of these.
// Entries are plain JSON. Times and ids travel inside the entry, so applying one is deterministic
// and every replica that applies the same entries reaches the same state. Keeper liveness is soft
// state (heartbeats) and never enters the log.
import { DfsError } from '../wire/errors.js';
import { checkPath } from './paths.js';

/** Most replicas one file may ask for. */
export const MAX_REPLICATION = 16;
/** Largest chunk size a file may use, in bytes (1 GiB). */
export const MAX_CHUNK_SIZE = 1024 * 1024 * 1024;
/** Longest keeper id and zone name, in characters. */
export const MAX_KEEPER_NAME = 128;
/** Longest keeper address, in characters. */
export const MAX_KEEPER_ADDRESS = 255;

/** Chunk and upload ids: 16 random bytes in lowercase hex. Never derived from a path. */
export const ID_PATTERN = /^[0-9a-f]{32}$/;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;
// Keeper ids and zones appear in logs and messages: printable, no spaces, no separators that need quoting.
const KEEPER_NAME_PATTERN = /^[A-Za-z0-9._:@-]+$/;

/** Creates a directory; with `parents`, also every missing ancestor, and an existing directory is no error. */
export interface MkdirEntry {
  readonly type: 'mkdir';
  readonly path: string;
  readonly parents: boolean;
  readonly mtime: number;
}

/** Opens an upload of `path`. Nothing is visible until commit-file; abort-upload or commit ends it. */
export interface BeginUploadEntry {
  readonly type: 'begin-upload';
  readonly uploadId: string;
  readonly path: string;
  readonly replication: number;
  readonly chunkSize: number;
  readonly mtime: number;
}

export interface ChunkAllocation {
  readonly id: string;
  /** Keepers the chunk was placed on: they may hold (part of) it from now on. */
  readonly replicas: readonly string[];
}

/**
 * Records chunk ids handed to an upload and where they were placed, before any byte is written,
 * so that a crash or an abandoned upload still leaves a record of what to collect.
 */
export interface AllocateChunksEntry {
  readonly type: 'allocate-chunks';
  readonly uploadId: string;
  readonly chunks: readonly ChunkAllocation[];
  readonly mtime: number;
}

export interface CommittedChunk {
  readonly id: string;
  readonly size: number;
  /** SHA-256 of the chunk's bytes, lowercase hex. */
  readonly sha256: string;
  /** Keepers that acknowledged the whole chunk. */
  readonly replicas: readonly string[];
}

/**
 * Makes an upload visible at its path, atomically replacing any file there. The chunks, in file
 * order, must all have been allocated to this upload; allocated chunks left out become garbage.
 * Replication and chunk size are those given at begin-upload.
 */
export interface CommitFileEntry {
  readonly type: 'commit-file';
  readonly uploadId: string;
  readonly path: string;
  readonly size: number;
  readonly chunks: readonly CommittedChunk[];
  readonly mtime: number;
}

/** Ends an upload without a file; every chunk allocated to it becomes garbage. */
export interface AbortUploadEntry {
  readonly type: 'abort-upload';
  readonly uploadId: string;
  readonly mtime: number;
}

export interface RemoveEntry {
  readonly type: 'remove';
  readonly path: string;
  readonly recursive: boolean;
  readonly mtime: number;
}

export interface RenameEntry {
  readonly type: 'rename';
  readonly src: string;
  readonly dst: string;
  readonly mtime: number;
}

/** Adds a keeper, or updates the address, zone and capacity of a known one (a restart may move it). */
export interface RegisterKeeperEntry {
  readonly type: 'register-keeper';
  readonly id: string;
  readonly address: string;
  readonly zone: string;
  readonly capacity: number;
}

/**
 * Records re-replication (a copy made on `add`) and dropped replicas (`remove`) of a committed chunk.
 * A dropped replica becomes garbage on its keeper as of `mtime`: it may still hold the bytes.
 */
export interface UpdateReplicasEntry {
  readonly type: 'update-replicas';
  readonly chunkId: string;
  readonly add: readonly string[];
  readonly remove: readonly string[];
  readonly mtime: number;
}

/**
 * Records copies found on keepers (by their chunk reports) that nothing needs there: garbage as of
 * `mtime`. Copies that a committed file or an open upload does use on that keeper are skipped.
 */
export interface MarkGarbageEntry {
  readonly type: 'mark-garbage';
  readonly chunks: readonly GarbageRelease[];
  readonly mtime: number;
}

/**
 * Removes a keeper from the registry for good: one that is gone and holds no replica of a committed
 * chunk and no chunk of an open upload. Garbage records stop naming it.
 */
export interface ForgetKeeperEntry {
  readonly type: 'forget-keeper';
  readonly id: string;
}

export type KeeperModeName = 'normal' | 'maintenance' | 'draining';
export const KEEPER_MODES: readonly KeeperModeName[] = ['normal', 'maintenance', 'draining'];

/**
 * An operator's choice for a keeper: `maintenance` until `until` (its replicas count as live while it
 * is down, so a planned restart starts no repair), `draining` (no new chunks; its replicas are copied
 * elsewhere, then released), or `normal`.
 */
export interface KeeperModeEntry {
  readonly type: 'keeper-mode';
  readonly id: string;
  readonly mode: KeeperModeName;
  /** End of a maintenance window, ms since the epoch; 0 for the other modes. */
  readonly until: number;
}

export interface GarbageRelease {
  readonly id: string;
  /** Keepers that confirmed the chunk is gone. */
  readonly keepers: readonly string[];
}

/** Drops garbage records once keepers confirm deletion; a record goes when no keeper is left in it. */
export interface ForgetGarbageEntry {
  readonly type: 'forget-garbage';
  readonly chunks: readonly GarbageRelease[];
}

export type Entry =
  | MkdirEntry
  | BeginUploadEntry
  | AllocateChunksEntry
  | CommitFileEntry
  | AbortUploadEntry
  | RemoveEntry
  | RenameEntry
  | RegisterKeeperEntry
  | UpdateReplicasEntry
  | ForgetGarbageEntry
  | MarkGarbageEntry
  | KeeperModeEntry
  | ForgetKeeperEntry;

export type EntryType = Entry['type'];

export const ENTRY_TYPES: readonly EntryType[] = [
  'mkdir',
  'begin-upload',
  'allocate-chunks',
  'commit-file',
  'abort-upload',
  'remove',
  'rename',
  'register-keeper',
  'update-replicas',
  'forget-garbage',
  'mark-garbage',
  'keeper-mode',
  'forget-keeper',
];

// ---- shape checks ---------------------------------------------------------------------------
// Entries come back from a journal or a peer, so the state machine trusts nothing about their shape.

type Obj = Record<string, unknown>;

function bad(where: string, what: string): never {
  throw new DfsError('INVALID_ARGUMENT', `${where}: ${what}`);
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function fieldInt(where: string, o: Obj, key: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    bad(where, `${key} must be an integer from ${min} to ${max}, got ${JSON.stringify(v) ?? 'nothing'}`);
  }
  return v;
}

function fieldBool(where: string, o: Obj, key: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') bad(where, `${key} must be true or false, got ${JSON.stringify(v) ?? 'nothing'}`);
  return v;
}

export function fieldId(where: string, o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string' || !ID_PATTERN.test(v)) {
    bad(where, `${key} must be 32 lowercase hex digits, got ${JSON.stringify(v) ?? 'nothing'}`);
  }
  return v;
}

export function fieldSha256(where: string, o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string' || !SHA256_PATTERN.test(v)) {
    bad(where, `${key} must be a SHA-256 in 64 lowercase hex digits, got ${JSON.stringify(v) ?? 'nothing'}`);
  }
  return v;
}

export function fieldKeeperName(where: string, o: Obj, key: string): string {
  return keeperName(where, key, o[key]);
}

function keeperName(where: string, key: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_KEEPER_NAME || !KEEPER_NAME_PATTERN.test(v)) {
    bad(
      where,
      `${key} must be 1 to ${MAX_KEEPER_NAME} characters of A-Z a-z 0-9 . _ : @ -, got ${JSON.stringify(v) ?? 'nothing'}`,
    );
  }
  return v;
}

function fieldPath(where: string, o: Obj, key: string): string {
  return checkPath(where, o[key]);
}

function fieldArray(where: string, o: Obj, key: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) bad(where, `${key} must be an array`);
  return v;
}

/** A list of distinct keeper ids; `nonEmpty` when at least one keeper must hold the data. */
export function fieldKeeperList(where: string, o: Obj, key: string, nonEmpty: boolean): string[] {
  const list = fieldArray(where, o, key);
  if (nonEmpty && list.length === 0) bad(where, `${key} must name at least one keeper`);
  const out: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < list.length; i++) {
    const id = keeperName(where, `${key}[${i}]`, list[i]);
    if (seen.has(id)) bad(where, `${key} names keeper ${id} twice`);
    seen.add(id);
    out.push(id);
  }
  return out;
}

function items(where: string, o: Obj, key: string, nonEmpty: boolean): Obj[] {
  const list = fieldArray(where, o, key);
  if (nonEmpty && list.length === 0) bad(where, `${key} must not be empty`);
  return list.map((item, i) => (isObj(item) ? item : bad(where, `${key}[${i}] must be an object`)));
}

/**
 * Checks the shape of one entry and returns a fresh copy holding only the known fields, so that a
 * caller mutating its object afterwards cannot reach into the state. Throws INVALID_ARGUMENT.
 * Path syntax is checked here; whether paths exist is the state machine's business.
 */
export function parseEntry(value: unknown): Entry {
  if (!isObj(value)) bad('entry', 'must be a JSON object');
  const o = value;
  const type = o.type;
  const where = `${typeof type === 'string' ? type : 'entry'}`;
  switch (type) {
    case 'mkdir':
      return { type, path: fieldPath('mkdir', o, 'path'), parents: fieldBool(where, o, 'parents'), mtime: fieldInt(where, o, 'mtime', 0) };
    case 'begin-upload':
      return {
        type,
        uploadId: fieldId(where, o, 'uploadId'),
        path: fieldPath('upload', o, 'path'),
        replication: fieldInt(where, o, 'replication', 1, MAX_REPLICATION),
        chunkSize: fieldInt(where, o, 'chunkSize', 1, MAX_CHUNK_SIZE),
        mtime: fieldInt(where, o, 'mtime', 0),
      };
    case 'allocate-chunks': {
      const chunks = items(where, o, 'chunks', true).map((c, i) => ({
        id: fieldId(`${where} chunks[${i}]`, c, 'id'),
        replicas: fieldKeeperList(`${where} chunks[${i}]`, c, 'replicas', true),
      }));
      return { type, uploadId: fieldId(where, o, 'uploadId'), chunks, mtime: fieldInt(where, o, 'mtime', 0) };
    }
    case 'commit-file': {
      const chunks = items(where, o, 'chunks', false).map((c, i) => ({
        id: fieldId(`${where} chunks[${i}]`, c, 'id'),
        size: fieldInt(`${where} chunks[${i}]`, c, 'size', 1, MAX_CHUNK_SIZE),
        sha256: fieldSha256(`${where} chunks[${i}]`, c, 'sha256'),
        replicas: fieldKeeperList(`${where} chunks[${i}]`, c, 'replicas', true),
      }));
      return {
        type,
        uploadId: fieldId(where, o, 'uploadId'),
        path: fieldPath('commit', o, 'path'),
        size: fieldInt(where, o, 'size', 0),
        chunks,
        mtime: fieldInt(where, o, 'mtime', 0),
      };
    }
    case 'abort-upload':
      return { type, uploadId: fieldId(where, o, 'uploadId'), mtime: fieldInt(where, o, 'mtime', 0) };
    case 'remove':
      return { type, path: fieldPath('remove', o, 'path'), recursive: fieldBool(where, o, 'recursive'), mtime: fieldInt(where, o, 'mtime', 0) };
    case 'rename':
      return {
        type,
        src: fieldPath('rename', o, 'src'),
        dst: fieldPath('rename', o, 'dst'),
        mtime: fieldInt(where, o, 'mtime', 0),
      };
    case 'register-keeper': {
      const address = o.address;
      if (typeof address !== 'string' || address.length === 0 || address.length > MAX_KEEPER_ADDRESS || address.includes('\0')) {
        bad(where, `address must be 1 to ${MAX_KEEPER_ADDRESS} characters, got ${JSON.stringify(address) ?? 'nothing'}`);
      }
      return {
        type,
        id: fieldKeeperName(where, o, 'id'),
        address,
        zone: fieldKeeperName(where, o, 'zone'),
        capacity: fieldInt(where, o, 'capacity', 0),
      };
    }
    case 'update-replicas':
      return {
        type,
        chunkId: fieldId(where, o, 'chunkId'),
        add: fieldKeeperList(where, o, 'add', false),
        remove: fieldKeeperList(where, o, 'remove', false),
        mtime: fieldInt(where, o, 'mtime', 0),
      };
    case 'forget-garbage': {
      const chunks = items(where, o, 'chunks', false).map((c, i) => ({
        id: fieldId(`${where} chunks[${i}]`, c, 'id'),
        keepers: fieldKeeperList(`${where} chunks[${i}]`, c, 'keepers', true),
      }));
      return { type, chunks };
    }
    case 'mark-garbage': {
      const chunks = items(where, o, 'chunks', true).map((c, i) => ({
        id: fieldId(`${where} chunks[${i}]`, c, 'id'),
        keepers: fieldKeeperList(`${where} chunks[${i}]`, c, 'keepers', true),
      }));
      return { type, chunks, mtime: fieldInt(where, o, 'mtime', 0) };
    }
    case 'forget-keeper':
      return { type, id: fieldKeeperName(where, o, 'id') };
    case 'keeper-mode': {
      const mode = o.mode;
      if (typeof mode !== 'string' || !(KEEPER_MODES as readonly string[]).includes(mode)) {
        bad(where, `mode must be one of ${KEEPER_MODES.join(', ')}, got ${JSON.stringify(mode) ?? 'nothing'}`);
      }
      const until = fieldInt(where, o, 'until', 0);
      if (mode !== 'maintenance' && until !== 0) bad(where, `until must be 0 unless the mode is maintenance`);
      return { type, id: fieldKeeperName(where, o, 'id'), mode: mode as KeeperModeName, until };
    }
    default:
      return bad('entry', `unknown type ${JSON.stringify(type) ?? 'nothing'}; known types are ${ENTRY_TYPES.join(', ')}`);
  }
}
