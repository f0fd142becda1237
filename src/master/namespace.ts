// The master's metadata as a deterministic state machine: the namespace tree, pending uploads,
// where chunk replicas live, registered keepers and garbage. All change goes through `apply(entry)`.
//
// Every handler first checks everything that can fail, then returns a closure that only mutates
// and cannot throw; so a rejected entry leaves the state exactly as it was, on every replica alike.
import { DfsError } from '../wire/errors.js';
import {
  fieldId,
  fieldInt,
  fieldKeeperList,
  fieldKeeperName,
  fieldSha256,
  MAX_CHUNK_SIZE,
  MAX_KEEPER_ADDRESS,
  MAX_REPLICATION,
  parseEntry,
  type AbortUploadEntry,
  type AllocateChunksEntry,
  type BeginUploadEntry,
  type CommitFileEntry,
  type Entry,
  type ForgetGarbageEntry,
  type KeeperModeEntry,
  type ForgetKeeperEntry,
  type KeeperModeName,
  type MarkGarbageEntry,
  KEEPER_MODES,
  type MkdirEntry,
  type RegisterKeeperEntry,
  type RemoveEntry,
  type RenameEntry,
  type UpdateReplicasEntry,
} from './entries.js';
import { isUtf8 } from 'node:buffer';
import { checkPath, isSameOrBelow, joinNames, MAX_NAME_BYTES, parentPath, pathProblem, splitPath } from './paths.js';
import { ChunkTable } from './chunk-table.js';
import { Children, FileTable } from './file-table.js';
import type { CheckpointReader, CheckpointWriter } from './checkpoint-format.js';

import type {
  AbortUploadResult,
  AllocateChunksResult,
  BeginUploadResult,
  ChunkInfo,
  ChunkLocation,
  ChunkOwner,
  ChunkPlacement,
  CommitFileResult,
  EntryResults,
  ForgetGarbageResult,
  GarbageChunk,
  KeeperModeInfo,
  KeeperModeResult,
  ForgetKeeperResult,
  KeeperRecord,
  MarkGarbageResult,
  ListEntry,
  MetadataSnapshot,
  MetadataStats,
  MkdirResult,
  RegisterKeeperResult,
  RemoveResult,
  RenameResult,
  SnapshotDir,
  SnapshotNode,
  Stat,
  UpdateReplicasResult,
  UploadInfo,
} from './state-types.js';

export type * from './state-types.js';

/** Format of `snapshot()`; `fromSnapshot` refuses any other. */
export const SNAPSHOT_VERSION = 1;

// ---- internal state --------------------------------------------------------------------------

class DirNode {
  readonly kind = 'dir';
  /** Subdirectories by name; files by name through the file table, which holds their names. */
  readonly children: Children<DirNode>;

  constructor(public name: string, public parent: DirNode | null, public mtime: number, files: FileTable<DirNode>) {
    this.children = new Children(files, this);
  }
}

/** A directory, or a committed file as its slot in the file table. */
type Node = DirNode | number;

const isFile = (n: Node): n is number => typeof n === 'number';

interface Upload {
  readonly uploadId: string;
  readonly path: string;
  readonly replication: number;
  readonly chunkSize: number;
  readonly started: number;
  touched: number;
  /** Allocation order; chunk id -> keepers it was placed on. */
  readonly chunks: Map<string, readonly string[]>;
}

interface GarbageRecord {
  keepers: readonly string[];
  readonly since: number;
}

type Mutation<R> = () => R;

const NO_REPLICAS: readonly number[] = [];

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const byKey = <K extends string>(key: K) => (a: Record<K, string>, b: Record<K, string>) =>
  a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0;

function freezeChunk(id: string, size: number, sha256: string, replicas: readonly string[]): ChunkInfo {
  return Object.freeze({ id, size, sha256, replicas: Object.freeze(replicas.slice()) });
}

export class MetadataState {
  private readonly uploadsById = new Map<string, Upload>();
  private readonly keepersById = new Map<string, KeeperRecord>();
  private readonly garbageById = new Map<string, GarbageRecord>();
  /** Keepers an operator put in maintenance or draining; absent means normal. */
  private readonly modesById = new Map<string, KeeperModeInfo>();
  /** Every chunk of a committed file: ids, digests, sizes, owners, replicas (interned keepers). */
  private readonly chunkTable = new ChunkTable();
  /** Every committed file, by slot; directories' `children` map names to these slots. */
  private readonly fileTable = new FileTable<DirNode>();
  private readonly root = new DirNode('', null, 0, this.fileTable);
  /** Every chunk allocated to a pending upload. */
  private readonly uploadChunks = new Map<string, Upload>();
  private dirCount = 1;
  private fileCount = 0;
  private byteCount = 0;

  // ---- applying entries ----------------------------------------------------------------------

  /**
   * Applies one entry. Throws DfsError when the entry is refused, and then nothing has changed;
   * the same entry on the same state gives the same result or the same error on every replica.
   */
  apply<E extends Entry>(entry: E): EntryResults[E['type']] {
    return this.prepare(parseEntry(entry))() as EntryResults[E['type']];
  }

  /** Throws exactly what `apply` would, without changing anything: a leader's check before logging. */
  validate(entry: Entry): void {
    this.prepare(parseEntry(entry));
  }

  private prepare(e: Entry): Mutation<unknown> {
    switch (e.type) {
      case 'mkdir':
        return this.prepareMkdir(e);
      case 'begin-upload':
        return this.prepareBeginUpload(e);
      case 'allocate-chunks':
        return this.prepareAllocateChunks(e);
      case 'commit-file':
        return this.prepareCommitFile(e);
      case 'abort-upload':
        return this.prepareAbortUpload(e);
      case 'remove':
        return this.prepareRemove(e);
      case 'rename':
        return this.prepareRename(e);
      case 'register-keeper':
        return this.prepareRegisterKeeper(e);
      case 'update-replicas':
        return this.prepareUpdateReplicas(e);
      case 'forget-garbage':
        return this.prepareForgetGarbage(e);
      case 'mark-garbage':
        return this.prepareMarkGarbage(e);
      case 'keeper-mode':
        return this.prepareKeeperMode(e);
      case 'forget-keeper':
        return this.prepareForgetKeeper(e);
    }
  }

  private prepareMkdir(e: MkdirEntry): Mutation<MkdirResult> {
    const { path, mtime } = e;
    const names = splitPath(path);
    if (names.length === 0) {
      if (e.parents) return () => ({ created: [] });
      throw new DfsError('ALREADY_EXISTS', 'mkdir /: the root directory always exists');
    }
    let dir = this.root;
    let depth = 0;
    const last = names.length - 1;
    if (e.parents) {
      for (; depth < names.length; depth++) {
        const child = dir.children.get(names[depth]);
        if (child === undefined) break;
        if (isFile(child)) {
          if (depth === last) throw new DfsError('ALREADY_EXISTS', `mkdir ${path}: ${path} exists and is a file`);
          throw this.fileInTheWay('mkdir', path, names, depth);
        }
        dir = child;
      }
      if (depth === names.length) return () => ({ created: [] });
    } else {
      dir = this.parentDir('mkdir', path, names);
      depth = last;
      const existing = dir.children.get(names[last]);
      if (existing !== undefined) {
        throw new DfsError(
          'ALREADY_EXISTS',
          `mkdir ${path}: ${path} already exists${isFile(existing) ? ' and is a file' : ''}`,
        );
      }
    }
    const from = depth;
    const top = dir;
    return () => {
      const created: string[] = [];
      let parent = top;
      parent.mtime = mtime;
      for (let i = from; i < names.length; i++) {
        const child = new DirNode(names[i], parent, mtime, this.fileTable);
        parent.children.set(child.name, child);
        created.push(joinNames(names, i + 1));
        parent = child;
      }
      this.dirCount += created.length;
      return { created };
    };
  }

  private prepareBeginUpload(e: BeginUploadEntry): Mutation<BeginUploadResult> {
    const { uploadId, path } = e;
    if (this.uploadsById.has(uploadId)) {
      throw new DfsError('ALREADY_EXISTS', `upload ${path}: upload id ${uploadId} is already in use`);
    }
    this.checkFileTarget('upload', path);
    return () => {
      this.uploadsById.set(uploadId, {
        uploadId,
        path,
        replication: e.replication,
        chunkSize: e.chunkSize,
        started: e.mtime,
        touched: e.mtime,
        chunks: new Map(),
      });
      return { uploadId, path };
    };
  }

  private prepareAllocateChunks(e: AllocateChunksEntry): Mutation<AllocateChunksResult> {
    const upload = this.pendingUpload('allocate chunks', e.uploadId);
    const where = `allocate chunks for ${upload.path} (upload ${upload.uploadId})`;
    const seen = new Set<string>();
    for (const chunk of e.chunks) {
      if (seen.has(chunk.id)) throw new DfsError('INVALID_ARGUMENT', `${where}: chunk ${chunk.id} is listed twice`);
      seen.add(chunk.id);
      this.checkNewChunkId(where, chunk.id);
      this.checkKeepersKnown(where, chunk.replicas);
      if (chunk.replicas.length > upload.replication) {
        throw new DfsError(
          'INVALID_ARGUMENT',
          `${where}: chunk ${chunk.id} is placed on ${chunk.replicas.length} keepers, more than the file's replication of ${upload.replication}`,
        );
      }
    }
    return () => {
      for (const chunk of e.chunks) {
        upload.chunks.set(chunk.id, Object.freeze(chunk.replicas.slice()));
        this.uploadChunks.set(chunk.id, upload);
      }
      upload.touched = e.mtime;
      return { uploadId: upload.uploadId, allocated: upload.chunks.size };
    };
  }

  private prepareCommitFile(e: CommitFileEntry): Mutation<CommitFileResult> {
    const { path, size, mtime } = e;
    const upload = this.pendingUpload(`commit ${path}`, e.uploadId);
    if (upload.path !== path) {
      throw new DfsError('INVALID_ARGUMENT', `commit ${path}: upload ${upload.uploadId} was begun for ${upload.path}`);
    }
    const where = `commit ${path}`;
    // The layout every reader relies on: chunk i holds bytes [i * chunkSize, (i + 1) * chunkSize).
    const expected = size === 0 ? 0 : Math.ceil(size / upload.chunkSize);
    if (e.chunks.length !== expected) {
      throw new DfsError(
        'INVALID_ARGUMENT',
        `${where}: ${size} bytes in chunks of ${upload.chunkSize} need ${expected} chunks, the commit lists ${e.chunks.length}`,
      );
    }
    const seen = new Set<string>();
    for (let i = 0; i < e.chunks.length; i++) {
      const chunk = e.chunks[i];
      const want = i < expected - 1 ? upload.chunkSize : size - (expected - 1) * upload.chunkSize;
      if (chunk.size !== want) {
        throw new DfsError('INVALID_ARGUMENT', `${where}: chunk ${i} (${chunk.id}) has ${chunk.size} bytes, expected ${want}`);
      }
      if (seen.has(chunk.id)) throw new DfsError('INVALID_ARGUMENT', `${where}: chunk ${chunk.id} is listed twice`);
      seen.add(chunk.id);
      if (!upload.chunks.has(chunk.id)) {
        throw new DfsError(
          'INVALID_ARGUMENT',
          `${where}: chunk ${chunk.id} was not allocated to upload ${upload.uploadId}; allocate chunks before writing them`,
        );
      }
      this.checkKeepersKnown(where, chunk.replicas);
    }
    const parent = this.checkFileTarget('commit', path);
    const name = path.slice(path.lastIndexOf('/') + 1);
    const old = parent.children.get(name) as number | undefined;
    return () => {
      let garbageChunks = 0;
      if (old !== undefined) garbageChunks += this.dropFile(old, mtime);
      const file = this.fileTable.add(name, parent.children.key, mtime, size, upload.replication, upload.chunkSize, upload.uploadId);
      const keepers = this.chunkTable.keepers;
      this.fileTable.setChunks(file, e.chunks.map((c) =>
        this.chunkTable.add(c.id, c.size, c.sha256, c.replicas.map((k) => keepers.intern(k)), file)));
      for (const [id, replicas] of upload.chunks) {
        this.uploadChunks.delete(id);
        if (!seen.has(id)) {
          this.addGarbage(id, replicas, mtime);
          garbageChunks++;
        }
      }
      this.uploadsById.delete(upload.uploadId);
      parent.children.set(name, file);
      parent.mtime = mtime;
      this.fileCount++;
      this.byteCount += size;
      return { path, replaced: old !== undefined, garbageChunks };
    };
  }

  private prepareAbortUpload(e: AbortUploadEntry): Mutation<AbortUploadResult> {
    const upload = this.pendingUpload('abort', e.uploadId);
    return () => {
      for (const [id, replicas] of upload.chunks) {
        this.uploadChunks.delete(id);
        this.addGarbage(id, replicas, e.mtime);
      }
      this.uploadsById.delete(upload.uploadId);
      return { path: upload.path, garbageChunks: upload.chunks.size };
    };
  }

  private prepareRemove(e: RemoveEntry): Mutation<RemoveResult> {
    const { path, mtime } = e;
    const names = splitPath(path);
    if (names.length === 0) throw new DfsError('INVALID_ARGUMENT', 'remove /: the root directory cannot be removed');
    const parent = this.parentDir('remove', path, names);
    const name = names[names.length - 1];
    const node = parent.children.get(name);
    if (node === undefined) throw new DfsError('NOT_FOUND', `remove ${path}: no such file or directory`);
    if (!isFile(node) && node.children.size > 0 && !e.recursive) {
      throw new DfsError(
        'DIRECTORY_NOT_EMPTY',
        `remove ${path}: the directory holds ${node.children.size} ${node.children.size === 1 ? 'entry' : 'entries'}; remove it recursively to delete ${node.children.size === 1 ? 'it' : 'them'} too`,
      );
    }
    return () => {
      parent.children.delete(name);
      parent.mtime = mtime;
      return this.dropTree(node, mtime);
    };
  }

  private prepareRename(e: RenameEntry): Mutation<RenameResult> {
    const { src, dst, mtime } = e;
    const where = `rename ${src} to ${dst}`;
    const srcNames = splitPath(src);
    const dstNames = splitPath(dst);
    if (srcNames.length === 0) throw new DfsError('INVALID_ARGUMENT', `${where}: the root directory cannot be moved`);
    const srcParent = this.parentDir('rename', src, srcNames);
    const srcName = srcNames[srcNames.length - 1];
    const node = srcParent.children.get(srcName);
    if (node === undefined) throw new DfsError('NOT_FOUND', `${where}: ${src} does not exist`);
    if (src === dst) return () => ({ replaced: false, garbageChunks: 0 });
    if (!isFile(node) && isSameOrBelow(dst, src)) {
      throw new DfsError('INVALID_ARGUMENT', `${where}: a directory cannot be moved into itself`);
    }
    if (dstNames.length === 0) throw new DfsError('INVALID_ARGUMENT', `${where}: the root directory cannot be replaced`);
    const dstParent = this.parentDir('rename', dst, dstNames);
    const dstName = dstNames[dstNames.length - 1];
    const target = dstParent.children.get(dstName);
    if (target !== undefined) {
      if (isFile(node) && !isFile(target)) {
        throw new DfsError('IS_A_DIRECTORY', `${where}: ${dst} is a directory and cannot be replaced by a file`);
      }
      if (!isFile(node) && isFile(target)) {
        throw new DfsError('NOT_A_DIRECTORY', `${where}: ${dst} is a file and cannot be replaced by a directory`);
      }
      if (!isFile(target) && target.children.size > 0) {
        throw new DfsError(
          'DIRECTORY_NOT_EMPTY',
          `${where}: ${dst} is a directory holding ${target.children.size} entries; only an empty one can be replaced`,
        );
      }
    }
    return () => {
      let garbageChunks = 0;
      if (target !== undefined) garbageChunks = this.dropTree(target, mtime).garbageChunks;
      srcParent.children.delete(srcName);
      if (isFile(node)) {
        this.fileTable.move(node, dstName, dstParent.children.key);
      } else {
        node.name = dstName;
        node.parent = dstParent;
      }
      dstParent.children.set(dstName, node);
      srcParent.mtime = mtime;
      dstParent.mtime = mtime;
      return { replaced: target !== undefined, garbageChunks };
    };
  }

  private prepareRegisterKeeper(e: RegisterKeeperEntry): Mutation<RegisterKeeperResult> {
    const record: KeeperRecord = Object.freeze({ id: e.id, address: e.address, zone: e.zone, capacity: e.capacity });
    return () => {
      const created = !this.keepersById.has(e.id);
      this.keepersById.set(e.id, record);
      return { created };
    };
  }

  private prepareUpdateReplicas(e: UpdateReplicasEntry): Mutation<UpdateReplicasResult> {
    const where = `update replicas of chunk ${e.chunkId}`;
    const slot = this.chunkTable.find(e.chunkId);
    if (slot < 0) throw new DfsError('NOT_FOUND', `${where}: no committed file holds this chunk`);
    for (const id of e.add) {
      if (e.remove.includes(id)) throw new DfsError('INVALID_ARGUMENT', `${where}: keeper ${id} is both added and removed`);
    }
    this.checkKeepersKnown(where, e.add);
    return () => {
      const old = this.chunkTable.replicas(slot);
      const replicas = old.filter((k) => !e.remove.includes(k));
      for (const k of e.add) if (!replicas.includes(k)) replicas.push(this.chunkTable.keepers.canonical(k));
      const keepers = this.chunkTable.keepers;
      this.chunkTable.setReplicas(slot, replicas.map((k) => keepers.intern(k)));
      // A dropped keeper may still hold the bytes: collect them, unless a later entry adds it back.
      const id = this.chunkTable.id(slot);
      this.addGarbage(id, old.filter((k) => !replicas.includes(k)), e.mtime);
      this.dropGarbageOn(id, e.add);
      return { replicas: Object.freeze(replicas) };
    };
  }

  private prepareForgetGarbage(e: ForgetGarbageEntry): Mutation<ForgetGarbageResult> {
    // Confirmations may repeat or race with each other, so unknown ids and keepers are not errors.
    return () => {
      let forgotten = 0;
      for (const { id, keepers } of e.chunks) {
        const record = this.garbageById.get(id);
        if (record === undefined) continue;
        record.keepers = record.keepers.filter((k) => !keepers.includes(k));
        if (record.keepers.length === 0) {
          this.garbageById.delete(id);
          forgotten++;
        }
      }
      return { forgotten };
    };
  }

  private prepareMarkGarbage(e: MarkGarbageEntry): Mutation<MarkGarbageResult> {
    return () => {
      let marked = 0;
      for (const { id, keepers } of e.chunks) {
        // A copy in use where it is, in a committed file or an open upload, is never garbage.
        if (this.uploadChunks.has(id)) continue;
        const slot = this.chunkTable.find(id);
        const inUse = slot < 0 ? [] : this.chunkTable.replicas(slot);
        const unused = keepers.filter((k) => !inUse.includes(k));
        this.addGarbage(id, unused, e.mtime);
        marked += unused.length;
      }
      return { marked };
    };
  }

  private prepareForgetKeeper(e: ForgetKeeperEntry): Mutation<ForgetKeeperResult> {
    const where = `forget keeper ${e.id}`;
    this.checkKeepersKnown(where, [e.id]);
    const index = this.chunkTable.keepers.lookup(e.id);
    const held = index === undefined ? 0 : this.chunkTable.slotsOnKeeper(index).length;
    if (held > 0) throw new DfsError('INVALID_ARGUMENT', `${where}: it still holds replicas of ${held} committed chunk(s); drain it first`);
    for (const u of this.uploadsById.values()) {
      for (const replicas of u.chunks.values()) {
        if (replicas.includes(e.id)) throw new DfsError('INVALID_ARGUMENT', `${where}: open upload ${u.uploadId} of ${u.path} has chunks placed on it`);
      }
    }
    return () => {
      this.keepersById.delete(e.id);
      this.modesById.delete(e.id);
      let garbageReleased = 0;
      for (const [id, g] of this.garbageById) {
        if (!g.keepers.includes(e.id)) continue;
        garbageReleased++;
        const left = g.keepers.filter((k) => k !== e.id);
        if (left.length === 0) this.garbageById.delete(id);
        else this.garbageById.set(id, { keepers: Object.freeze(left), since: g.since });
      }
      return { garbageReleased };
    };
  }

  private prepareKeeperMode(e: KeeperModeEntry): Mutation<KeeperModeResult> {
    this.checkKeepersKnown(`set mode of keeper ${e.id}`, [e.id]);
    return () => {
      if (e.mode === 'normal') this.modesById.delete(e.id);
      else this.modesById.set(e.id, Object.freeze({ id: e.id, mode: e.mode, until: e.until }));
      return { mode: e.mode, until: e.until };
    };
  }

  // ---- checks (never mutate) -----------------------------------------------------------------

  /** The directory holding the last name of `path`, or the error that says why there is none. */
  private parentDir(op: string, path: string, names: readonly string[]): DirNode {
    let dir = this.root;
    for (let i = 0; i < names.length - 1; i++) {
      const child = dir.children.get(names[i]);
      if (child === undefined) {
        throw new DfsError('NOT_FOUND', `${op} ${path}: parent ${parentPath(path)} does not exist`);
      }
      if (isFile(child)) throw this.fileInTheWay(op, path, names, i);
      dir = child;
    }
    return dir;
  }

  private fileInTheWay(op: string, path: string, names: readonly string[], depth: number): DfsError {
    const at = joinNames(names, depth + 1);
    const what = depth === names.length - 2 ? `parent ${at} is a file` : `${at} is a file, not a directory`;
    return new DfsError('NOT_A_DIRECTORY', `${op} ${path}: ${what}`);
  }

  /** Where a file may be created at `path`: the parent directory, which must exist. */
  private checkFileTarget(op: string, path: string): DirNode {
    const names = splitPath(path);
    if (names.length === 0) throw new DfsError('IS_A_DIRECTORY', `${op} /: / is a directory`);
    const parent = this.parentDir(op, path, names);
    const existing = parent.children.get(names[names.length - 1]);
    if (existing !== undefined && !isFile(existing)) {
      throw new DfsError('IS_A_DIRECTORY', `${op} ${path}: ${path} is a directory`);
    }
    return parent;
  }

  private pendingUpload(op: string, uploadId: string): Upload {
    const upload = this.uploadsById.get(uploadId);
    if (upload === undefined) {
      throw new DfsError(
        'NOT_FOUND',
        `${op}: upload ${uploadId} is not pending (it was never begun, or was aborted or committed already)`,
      );
    }
    return upload;
  }

  private checkNewChunkId(where: string, id: string): void {
    if (this.chunkTable.find(id) >= 0 || this.uploadChunks.has(id) || this.garbageById.has(id)) {
      throw new DfsError('ALREADY_EXISTS', `${where}: chunk id ${id} is already in use; allocate a fresh random id`);
    }
  }

  private checkKeepersKnown(where: string, ids: readonly string[]): void {
    for (const id of ids) {
      if (!this.keepersById.has(id)) throw new DfsError('NOT_FOUND', `${where}: keeper ${id} is not registered`);
    }
  }

  // ---- mutations (never throw) ---------------------------------------------------------------

  /** Adds copies to the garbage record of a chunk; a record's time is that of its newest copy. */
  private addGarbage(id: string, keepers: readonly string[], since: number): void {
    if (keepers.length === 0) return;
    const canonical = keepers.map((k) => this.chunkTable.keepers.canonical(k));
    const old = this.garbageById.get(id);
    if (old === undefined) {
      this.garbageById.set(id, { keepers: Object.freeze(canonical), since });
      return;
    }
    const merged = old.keepers.slice();
    for (const k of canonical) if (!merged.includes(k)) merged.push(k);
    this.garbageById.set(id, { keepers: Object.freeze(merged), since: Math.max(old.since, since) });
  }

  /** A copy that became a replica again is no longer garbage on its keeper. */
  private dropGarbageOn(id: string, keepers: readonly string[]): void {
    const old = this.garbageById.get(id);
    if (old === undefined) return;
    const left = old.keepers.filter((k) => !keepers.includes(k));
    if (left.length === 0) this.garbageById.delete(id);
    else if (left.length < old.keepers.length) this.garbageById.set(id, { keepers: Object.freeze(left), since: old.since });
  }

  /** Unlinks nothing; turns the file's chunks into garbage and drops it from the counts. */
  private dropFile(file: number, since: number): number {
    const chunks = Array.from(this.fileTable.chunks(file));
    for (const slot of chunks) {
      this.addGarbage(this.chunkTable.id(slot), this.chunkTable.replicas(slot), since);
      this.chunkTable.remove(slot);
    }
    this.fileCount--;
    this.byteCount -= this.fileTable.size(file);
    this.fileTable.remove(file);
    return chunks.length;
  }

  /** The chunk in a slot as the frozen record queries hand out: a fresh copy, never shared state. */
  private chunkInfo(slot: number): ChunkInfo {
    const t = this.chunkTable;
    return freezeChunk(t.id(slot), t.size(slot), t.sha256(slot), t.replicas(slot));
  }

  private pathOf(node: Node): string {
    const names: string[] = [];
    let dir: DirNode;
    if (isFile(node)) {
      names.push(this.fileTable.name(node));
      dir = this.fileTable.parent(node);
    } else {
      dir = node;
    }
    for (; dir.parent !== null; dir = dir.parent) names.push(dir.name);
    return '/' + names.reverse().join('/');
  }

  /** Drops a detached subtree; iterative, because a path may nest two thousand directories deep. */
  private dropTree(top: Node, since: number): RemoveResult {
    let files = 0;
    let dirs = 0;
    let garbageChunks = 0;
    const stack: Node[] = [top];
    const released: DirNode[] = [];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (isFile(node)) {
        garbageChunks += this.dropFile(node, since);
        files++;
      } else {
        for (const child of node.children.values()) stack.push(child);
        released.push(node);
        dirs++;
      }
    }
    // Only now: a dropped file leaves its directory's list, which needs the directory known.
    for (const dir of released) dir.children.release();
    this.dirCount -= dirs;
    return { files, dirs, garbageChunks };
  }

  // ---- queries -------------------------------------------------------------------------------

  private resolve(op: string, path: string): Node | undefined {
    checkPath(op, path);
    let node: Node = this.root;
    if (path === '/') return node;
    let start = 1;
    for (;;) {
      const slash = path.indexOf('/', start);
      const child: Node | undefined = node.children.get(slash === -1 ? path.slice(start) : path.slice(start, slash));
      if (child === undefined) return undefined;
      if (slash === -1) return child;
      if (isFile(child)) return undefined;
      node = child;
      start = slash + 1;
    }
  }

  /** Like `resolve`, but says why nothing is there. */
  private find(op: string, path: string): Node {
    const node = this.resolve(op, path);
    if (node !== undefined) return node;
    const names = splitPath(path);
    this.parentDir(op, path, names);
    throw new DfsError('NOT_FOUND', `${op} ${path}: no such file or directory`);
  }

  private findFile(op: string, path: string): number {
    const node = this.find(op, path);
    if (!isFile(node)) throw new DfsError('IS_A_DIRECTORY', `${op} ${path}: ${path} is a directory`);
    return node;
  }

  private listEntry(node: Node): ListEntry {
    const f = this.fileTable;
    return isFile(node)
      ? { name: f.name(node), type: 'file', size: f.size(node), replication: f.replication(node), mtime: f.mtime(node), chunks: f.chunkCount(node), chunkSize: f.chunkSize(node) }
      : { name: node.name, type: 'dir', size: 0, replication: 0, mtime: node.mtime, chunks: node.children.size, chunkSize: 0 };
  }

  /** What is at `path`, or undefined when nothing is. Throws only for a malformed path. */
  lookup(path: string): ListEntry | undefined {
    const node = this.resolve('lookup', path);
    return node === undefined ? undefined : this.listEntry(node);
  }

  /** The entries of a directory, sorted by name (UTF-16 code units, the same on every host). */
  list(dirPath: string): ListEntry[] {
    const node = this.find('list', dirPath);
    if (isFile(node)) throw new DfsError('NOT_A_DIRECTORY', `list ${dirPath}: ${dirPath} is a file`);
    const out: ListEntry[] = [];
    for (const child of node.children.values()) out.push(this.listEntry(child));
    return out.sort(byName);
  }

  stat(path: string): Stat {
    const node = this.find('stat', path);
    if (!isFile(node)) return { type: 'dir', path, mtime: node.mtime, entries: node.children.size };
    const f = this.fileTable;
    return {
      type: 'file',
      path,
      size: f.size(node),
      replication: f.replication(node),
      chunkSize: f.chunkSize(node),
      mtime: f.mtime(node),
      uploadId: f.uploadId(node),
      chunks: Array.from(f.chunks(node), (slot) => this.chunkInfo(slot)),
    };
  }

  /** The chunks of a file in order, with their byte offsets and the keepers holding them. */
  chunkLocations(path: string): ChunkLocation[] {
    const file = this.findFile('locate chunks of', path);
    const chunkSize = this.fileTable.chunkSize(file);
    return Array.from(this.fileTable.chunks(file), (slot, i) => ({ ...this.chunkInfo(slot), offset: i * chunkSize }));
  }

  /** Which file holds a committed chunk, or undefined. */
  chunkOwner(chunkId: string): ChunkOwner | undefined {
    const slot = this.chunkTable.find(chunkId);
    if (slot < 0) return undefined;
    const file = this.chunkTable.owner(slot);
    const index = Array.prototype.indexOf.call(this.fileTable.chunks(file), slot);
    return { chunk: this.chunkInfo(slot), path: this.pathOf(file), index, replication: this.fileTable.replication(file) };
  }

  /** Where a committed chunk lives and how many replicas it wants: chunkOwner without the path, cheap enough to ask per chunk. */
  chunkPlacement(chunkId: string): ChunkPlacement | undefined {
    const slot = this.chunkTable.find(chunkId);
    if (slot < 0) return undefined;
    const t = this.chunkTable;
    return { chunk: { id: chunkId, size: t.size(slot), replicas: t.replicas(slot) }, replication: this.fileTable.replication(t.owner(slot)) };
  }

  /** Ids of committed chunks with a replica on the keeper, in no particular order. */
  chunksOnKeeper(keeperId: string): string[] {
    // A scan of the flat table (milliseconds at a million chunks) instead of a per-keeper index.
    const keeper = this.chunkTable.keepers.lookup(keeperId);
    return keeper === undefined ? [] : this.chunkTable.slotsOnKeeper(keeper).map((slot) => this.chunkTable.id(slot));
  }

  /** Chunks no file or upload references any more, oldest first in the order they became garbage. */
  /** The garbage records one at a time, for walks that must not copy them all; see `garbage`. */
  *garbageEntries(): Generator<GarbageChunk, void, undefined> {
    for (const [id, r] of this.garbageById) yield { id, keepers: r.keepers, since: r.since };
  }

  garbage(): GarbageChunk[] {
    const out: GarbageChunk[] = [];
    for (const [id, r] of this.garbageById) out.push({ id, keepers: r.keepers, since: r.since });
    return out;
  }

  upload(uploadId: string): UploadInfo | undefined {
    const u = this.uploadsById.get(uploadId);
    return u === undefined ? undefined : MetadataState.uploadInfo(u);
  }

  /** Pending uploads, for the sweep that aborts abandoned ones. */
  uploads(): UploadInfo[] {
    return [...this.uploadsById.values()].map(MetadataState.uploadInfo);
  }

  private static uploadInfo(u: Upload): UploadInfo {
    return {
      uploadId: u.uploadId,
      path: u.path,
      replication: u.replication,
      chunkSize: u.chunkSize,
      started: u.started,
      touched: u.touched,
      chunks: [...u.chunks].map(([id, replicas]) => ({ id, replicas })),
    };
  }

  keeper(id: string): KeeperRecord | undefined {
    return this.keepersById.get(id);
  }

  keepers(): KeeperRecord[] {
    return [...this.keepersById.values()];
  }

  /** The operator's mode for a keeper: normal unless a keeper-mode entry said otherwise. */
  keeperMode(id: string): KeeperModeInfo {
    return this.modesById.get(id) ?? { id, mode: 'normal', until: 0 };
  }

  /** Ids of every committed chunk, in no particular order; the caller must not apply entries while iterating. */
  *chunkIds(): Generator<string, void, undefined> {
    for (const slot of this.chunkTable.liveSlots()) yield this.chunkTable.id(slot);
  }

  /** The garbage record of a chunk, if any. */
  garbageOf(chunkId: string): GarbageChunk | undefined {
    const r = this.garbageById.get(chunkId);
    return r === undefined ? undefined : { id: chunkId, keepers: r.keepers, since: r.since };
  }

  /** True when an open upload was allocated this chunk. */
  isUploading(chunkId: string): boolean {
    return this.uploadChunks.has(chunkId);
  }

  stats(): MetadataStats {
    return {
      dirs: this.dirCount,
      files: this.fileCount,
      bytes: this.byteCount,
      chunks: this.chunkTable.count,
      uploads: this.uploadsById.size,
      garbage: this.garbageById.size,
      keepers: this.keepersById.size,
    };
  }

  // ---- checkpoints ---------------------------------------------------------------------------

  /** The whole state as canonical JSON-ready data: equal states give equal snapshots. */
  snapshot(): MetadataSnapshot {
    const sortedBy = <T>(values: Iterable<T>, cmp: (a: T, b: T) => number) => [...values].sort(cmp);
    return {
      version: SNAPSHOT_VERSION,
      root: this.snapshotDir(this.root),
      uploads: sortedBy(this.uploadsById.values(), byKey('uploadId')).map((u) => {
        const info = MetadataState.uploadInfo(u);
        return { ...info, chunks: info.chunks.slice().sort(byKey('id')) };
      }),
      keepers: sortedBy(this.keepersById.values(), byKey('id')).map((k) => ({
        id: k.id,
        address: k.address,
        zone: k.zone,
        capacity: k.capacity,
      })),
      garbage: this.garbage().sort(byKey('id')),
      modes: [...this.modesById.values()].sort(byKey('id')).map((m) => ({ id: m.id, mode: m.mode, until: m.until })),
    };
  }

  private snapshotDir(dir: DirNode): SnapshotDir {
    const children: SnapshotNode[] = [];
    const f = this.fileTable;
    for (const [name, child] of [...dir.children].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
      children.push(
        !isFile(child)
          ? this.snapshotDir(child)
          : {
              type: 'file',
              name,
              mtime: f.mtime(child),
              size: f.size(child),
              replication: f.replication(child),
              chunkSize: f.chunkSize(child),
              uploadId: f.uploadId(child),
              chunks: Array.from(f.chunks(child), (slot) => {
                const c = this.chunkInfo(slot);
                return { id: c.id, size: c.size, sha256: c.sha256, replicas: c.replicas.slice() };
              }),
            },
      );
    }
    return { type: 'dir', name: dir.name, mtime: dir.mtime, children };
  }

  /**
   * Writes the whole state in the binary checkpoint layout (see checkpoint-format.ts for the
   * framing). Flat sections, no recursion: keepers, interned keeper names, directories in
   * breadth-first order (each naming its parent's index), files (each naming its directory's
   * index, with its chunks), pending uploads, garbage, keeper modes.
   */
  writeCheckpoint(w: CheckpointWriter): void {
    w.u32(this.keepersById.size);
    for (const k of this.keepersById.values()) {
      w.str(k.id);
      w.str(k.address);
      w.str(k.zone);
      w.num(k.capacity);
    }
    const names = this.chunkTable.keepers;
    w.u32(names.size);
    for (let i = 0; i < names.size; i++) w.str(names.name(i));
    w.u32(this.dirCount - 1);
    w.u32(this.fileCount);
    w.u32(this.chunkTable.count);
    w.num(this.root.mtime);
    const dirs: DirNode[] = [this.root];
    for (let i = 0; i < dirs.length; i++) {
      for (const [name, child] of dirs[i].children.dirs) {
        dirs.push(child);
        w.u32(i);
        w.str(name);
        w.num(child.mtime);
      }
    }
    const f = this.fileTable;
    const t = this.chunkTable;
    for (let i = 0; i < dirs.length; i++) {
      for (const file of dirs[i].children.fileSlots()) {
        w.u32(i);
        const name = f.rawName(file);
        w.u32(name.length);
        w.raw(name);
        w.num(f.mtime(file));
        w.num(f.size(file));
        w.u8(f.replication(file));
        w.u32(f.chunkSize(file));
        w.raw(f.rawUploadId(file));
        const chunks = f.chunks(file);
        w.u32(chunks.length);
        for (let c = 0; c < chunks.length; c++) {
          const slot = chunks[c];
          w.raw(t.rawId(slot));
          w.u32(t.size(slot));
          w.raw(t.rawSha(slot));
          const replicas = t.replicaIndexes(slot);
          w.u8(replicas.length);
          for (const k of replicas) w.u16(k);
        }
      }
    }
    w.u32(this.uploadsById.size);
    for (const u of this.uploadsById.values()) {
      w.hex(u.uploadId, 16);
      w.str(u.path);
      w.u8(u.replication);
      w.u32(u.chunkSize);
      w.num(u.started);
      w.num(u.touched);
      w.u32(u.chunks.size);
      for (const [id, replicas] of u.chunks) {
        w.hex(id, 16);
        w.u8(replicas.length);
        for (const k of replicas) w.str(k);
      }
    }
    w.u32(this.garbageById.size);
    for (const [id, g] of this.garbageById) {
      w.hex(id, 16);
      w.num(g.since);
      w.u8(g.keepers.length);
      for (const k of g.keepers) w.str(k);
    }
    w.u32(this.modesById.size);
    for (const m of this.modesById.values()) {
      w.str(m.id);
      w.u8(m.mode === 'maintenance' ? 1 : 2);
      w.num(m.until);
    }
  }

  /** Rebuilds a state from `writeCheckpoint` output whose checksum the reader has verified. */
  static readCheckpoint(r: CheckpointReader): MetadataState {
    const st = new MetadataState();
    const int = (v: number, what: string, min = 0, max = Number.MAX_SAFE_INTEGER) =>
      Number.isSafeInteger(v) && v >= min && v <= max ? v : r.bad(`${what} ${v} is out of range`);
    for (let n = r.u32(); n > 0; n--) {
      const record: KeeperRecord = Object.freeze({ id: r.str(), address: r.str(), zone: r.str(), capacity: int(r.num(), 'capacity') });
      if (st.keepersById.has(record.id)) r.bad(`keeper ${record.id} appears twice`);
      st.keepersById.set(record.id, record);
    }
    const names = st.chunkTable.keepers;
    const nameCount = r.u32();
    for (let i = 0; i < nameCount; i++) {
      if (names.intern(r.str()) !== i) r.bad('a keeper name appears twice');
    }
    const dirCount = r.u32();
    const fileCount = r.u32();
    st.chunkTable.reserve(r.u32());
    st.fileTable.reserve(fileCount);
    st.root.mtime = int(r.num(), 'mtime');
    const dirs: DirNode[] = [st.root];
    const checkName = (dir: DirNode, name: string) => {
      if (name.length === 0 || name.includes('/') || name === '.' || name === '..') r.bad(`entry name ${JSON.stringify(name)} is not valid`);
      if (dir.children.has(name)) r.bad(`${name} appears twice in ${st.pathOf(dir)}`);
    };
    const checkRawName = (dir: DirNode, src: Buffer, at: number, len: number) => {
      const name = () => src.toString('utf8', at, at + len);
      for (let i = at; i < at + len; i++) if (src[i] === 0x2f) r.bad(`entry name ${JSON.stringify(name())} is not valid`);
      if (src[at] === 0x2e && (len === 1 || (len === 2 && src[at + 1] === 0x2e))) r.bad(`entry name ${JSON.stringify(name())} is not valid`);
      if (!isUtf8(src.subarray(at, at + len))) r.bad(`entry name ${JSON.stringify(name())} is not UTF-8`);
      if (st.fileTable.findRaw(dir.children.key, src, at, len) >= 0 || (dir.children.dirs.size > 0 && dir.children.dirs.has(name()))) {
        r.bad(`${name()} appears twice in ${st.pathOf(dir)}`);
      }
    };
    const parentAt = (i: number) => (i < dirs.length ? dirs[i] : r.bad(`directory index ${i} is not known yet`));
    for (let n = 0; n < dirCount; n++) {
      const parent = parentAt(r.u32());
      const name = r.str();
      checkName(parent, name);
      const dir = new DirNode(name, parent, int(r.num(), 'mtime'), st.fileTable);
      parent.children.set(name, dir);
      dirs.push(dir);
    }
    st.dirCount += dirCount;
    const t = st.chunkTable;
    const replicas: number[] = [];
    const slots: number[] = [];
    for (let n = 0; n < fileCount; n++) {
      const parent = parentAt(r.u32());
      // The name, mtime (8), size (8), replication (1), chunk size (4) and upload id (16) in one
      // read, and the name copied as bytes: loading a million files makes no string per file.
      const nameLen = r.u32();
      if (nameLen === 0 || nameLen > MAX_NAME_BYTES) r.bad(`a file name of ${nameLen} bytes is not valid`);
      const at = r.raw(nameLen + 37);
      const buf = r.buffer;
      const fixed = at + nameLen;
      checkRawName(parent, buf, at, nameLen);
      const mtime = int(buf.readDoubleLE(fixed), 'mtime');
      const size = int(buf.readDoubleLE(fixed + 8), 'size');
      const replication = int(buf[fixed + 16], 'replication', 1, MAX_REPLICATION);
      const chunkSize = int(buf.readUInt32LE(fixed + 17), 'chunk size', 1, MAX_CHUNK_SIZE);
      const file = st.fileTable.addRaw(buf, at, nameLen, parent.children.key, mtime, size, replication, chunkSize, fixed + 21);
      slots.length = 0;
      let total = 0;
      for (let c = r.u32(); c > 0; c--) {
        // id (16), size (4), sha256 (32) in one read: `raw` offsets hold only until the next read.
        const idAt = r.raw(52);
        const buf = r.buffer;
        const chunkBytes = int(buf.readUInt32LE(idAt + 16), 'chunk size', 1, chunkSize);
        const shaAt = idAt + 20;
        if (t.hasRaw(buf, idAt)) r.bad(`chunk ${buf.toString('hex', idAt, idAt + 16)} appears twice`);
        const slot = t.addRaw(buf, idAt, shaAt, chunkBytes, NO_REPLICAS, file);
        replicas.length = 0;
        for (let k = r.u8(); k > 0; k--) {
          const keeper = r.u16();
          if (keeper >= nameCount || !st.keepersById.has(names.name(keeper))) r.bad(`replica on unregistered keeper #${keeper}`);
          replicas.push(keeper);
        }
        t.setReplicas(slot, replicas);
        slots.push(slot);
        total += chunkBytes;
      }
      if (total !== size) r.bad(`${st.fileTable.name(file)}: chunks hold ${total} bytes but the file has ${size}`);
      st.fileTable.setChunks(file, slots);
      st.fileTable.link(file);
      st.byteCount += size;
    }
    st.fileCount = fileCount;
    const newChunk = (id: string) => {
      if (t.find(id) >= 0 || st.uploadChunks.has(id) || st.garbageById.has(id)) r.bad(`chunk ${id} appears twice`);
      return id;
    };
    for (let n = r.u32(); n > 0; n--) {
      const upload: Upload = {
        uploadId: r.hex(16),
        path: r.str(),
        replication: int(r.u8(), 'replication', 1, MAX_REPLICATION),
        chunkSize: int(r.u32(), 'chunk size', 1, MAX_CHUNK_SIZE),
        started: int(r.num(), 'mtime'),
        touched: int(r.num(), 'mtime'),
        chunks: new Map(),
      };
      if (st.uploadsById.has(upload.uploadId)) r.bad(`upload ${upload.uploadId} appears twice`);
      for (let c = r.u32(); c > 0; c--) {
        const id = newChunk(r.hex(16));
        const keepers: string[] = [];
        for (let k = r.u8(); k > 0; k--) keepers.push(names.canonical(r.str()));
        upload.chunks.set(id, Object.freeze(keepers));
        st.uploadChunks.set(id, upload);
      }
      st.uploadsById.set(upload.uploadId, upload);
    }
    for (let n = r.u32(); n > 0; n--) {
      // A committed chunk's id may be garbage too: copies on keepers that are not its replicas.
      const id = r.hex(16);
      if (st.uploadChunks.has(id) || st.garbageById.has(id)) r.bad(`garbage chunk ${id} appears twice`);
      const since = int(r.num(), 'mtime');
      const keepers: string[] = [];
      for (let k = r.u8(); k > 0; k--) keepers.push(names.canonical(r.str()));
      st.garbageById.set(id, { keepers: Object.freeze(keepers), since });
    }
    for (let n = r.u32(); n > 0; n--) {
      const id = r.str();
      const mode = r.u8();
      const until = int(r.num(), 'maintenance end');
      if (!st.keepersById.has(id)) r.bad(`mode for unregistered keeper ${id}`);
      if (mode !== 1 && mode !== 2) r.bad(`keeper mode ${mode} is not 1 (maintenance) or 2 (draining)`);
      st.modesById.set(id, Object.freeze({ id, mode: mode === 1 ? 'maintenance' : 'draining', until }));
    }
    if (!r.done) r.bad('bytes are left after the last section');
    return st;
  }

  /** Rebuilds a state from `snapshot()` output, checking it as strictly as entries are checked. */
  static fromSnapshot(snapshot: unknown): MetadataState {
    const state = new MetadataState();
    state.load(snapshot);
    return state;
  }

  // Order matters: keepers first (replicas must name known keepers), then files, uploads, garbage,
  // each checking that no chunk id appears twice across all of them.
  private load(value: unknown): void {
    const s = asObj('checkpoint', value);
    if (s.version !== SNAPSHOT_VERSION) {
      throw new DfsError(
        'INVALID_ARGUMENT',
        `checkpoint: version ${JSON.stringify(s.version)} is not supported; this dfs reads version ${SNAPSHOT_VERSION}`,
      );
    }
    for (const k of asArray('checkpoint keepers', s.keepers)) {
      const o = asObj('checkpoint keeper', k);
      const where = 'checkpoint keeper';
      const address = o.address;
      if (typeof address !== 'string' || address.length === 0 || address.length > MAX_KEEPER_ADDRESS) {
        throw new DfsError('INVALID_ARGUMENT', `${where}: address must be 1 to ${MAX_KEEPER_ADDRESS} characters`);
      }
      const record: KeeperRecord = Object.freeze({
        id: fieldKeeperName(where, o, 'id'),
        address,
        zone: fieldKeeperName(where, o, 'zone'),
        capacity: fieldInt(where, o, 'capacity', 0),
      });
      if (this.keepersById.has(record.id)) throw new DfsError('INVALID_ARGUMENT', `${where}: ${record.id} appears twice`);
      this.keepersById.set(record.id, record);
    }
    const root = asObj('checkpoint root', s.root);
    this.root.mtime = fieldInt('checkpoint root', root, 'mtime', 0);
    // Iterative: directories may nest deeper than a comfortable recursion.
    const stack: Array<[DirNode, unknown]> = [[this.root, root.children]];
    while (stack.length > 0) {
      const [dir, children] = stack.pop()!;
      const at = this.pathOf(dir);
      for (const child of asArray(`checkpoint ${at}`, children)) {
        const o = asObj(`checkpoint ${at}`, child);
        const name = o.name;
        const problem = typeof name === 'string' && !name.includes('/') ? pathProblem('/' + name) : 'bad name';
        if (problem !== undefined || typeof name !== 'string' || name.length === 0) {
          throw new DfsError('INVALID_ARGUMENT', `checkpoint ${at}: entry name ${JSON.stringify(name)} is not valid`);
        }
        const path = at === '/' ? '/' + name : `${at}/${name}`;
        if (dir.children.has(name)) throw new DfsError('INVALID_ARGUMENT', `checkpoint ${path}: appears twice`);
        const where = `checkpoint ${path}`;
        const mtime = fieldInt(where, o, 'mtime', 0);
        if (o.type === 'dir') {
          const sub = new DirNode(name, dir, mtime, this.fileTable);
          dir.children.set(name, sub);
          this.dirCount++;
          stack.push([sub, o.children]);
        } else if (o.type === 'file') {
          const size = fieldInt(where, o, 'size', 0);
          const replication = fieldInt(where, o, 'replication', 1, MAX_REPLICATION);
          const chunkSize = fieldInt(where, o, 'chunkSize', 1, MAX_CHUNK_SIZE);
          const file = this.fileTable.add(name, dir.children.key, mtime, size, replication, chunkSize, fieldId(where, o, 'uploadId'));
          const slots: number[] = [];
          let total = 0;
          for (const c of asArray(`${where} chunks`, o.chunks)) {
            const co = asObj(`${where} chunk`, c);
            const id = this.loadChunkId(where, co);
            const chunkBytes = fieldInt(where, co, 'size', 1, chunkSize);
            const replicas = this.loadKeepers(where, co, 'replicas', false).map((k) => this.chunkTable.keepers.intern(k));
            slots.push(this.chunkTable.add(id, chunkBytes, fieldSha256(where, co, 'sha256'), replicas, file));
            total += chunkBytes;
          }
          this.fileTable.setChunks(file, slots);
          if (total !== size) {
            throw new DfsError('INVALID_ARGUMENT', `${where}: chunks hold ${total} bytes but the file has ${size}`);
          }
          dir.children.set(name, file);
          this.fileCount++;
          this.byteCount += size;
        } else {
          throw new DfsError('INVALID_ARGUMENT', `${where}: type must be "dir" or "file"`);
        }
      }
    }
    for (const u of asArray('checkpoint uploads', s.uploads)) {
      const o = asObj('checkpoint upload', u);
      const where = 'checkpoint upload';
      const upload: Upload = {
        uploadId: fieldId(where, o, 'uploadId'),
        path: checkPath(where, o.path),
        replication: fieldInt(where, o, 'replication', 1, MAX_REPLICATION),
        chunkSize: fieldInt(where, o, 'chunkSize', 1, MAX_CHUNK_SIZE),
        started: fieldInt(where, o, 'started', 0),
        touched: fieldInt(where, o, 'touched', 0),
        chunks: new Map(),
      };
      if (this.uploadsById.has(upload.uploadId)) {
        throw new DfsError('INVALID_ARGUMENT', `${where}: ${upload.uploadId} appears twice`);
      }
      for (const c of asArray(`${where} chunks`, o.chunks)) {
        const co = asObj(`${where} chunk`, c);
        const id = this.loadChunkId(where, co);
        upload.chunks.set(id, Object.freeze(this.loadKeepers(where, co, 'replicas', true)));
        this.uploadChunks.set(id, upload);
      }
      this.uploadsById.set(upload.uploadId, upload);
    }
    for (const g of asArray('checkpoint garbage', s.garbage)) {
      const o = asObj('checkpoint garbage', g);
      const where = 'checkpoint garbage';
      const id = fieldId(where, o, 'id');
      if (this.uploadChunks.has(id) || this.garbageById.has(id)) {
        throw new DfsError('INVALID_ARGUMENT', `${where}: chunk ${id} appears twice`);
      }
      // A committed chunk's id may be garbage too: copies on keepers that are not its replicas.
      // Garbage may name keepers since forgotten by the registry; only the shape is checked.
      this.addGarbage(id, Object.freeze(fieldKeeperList(where, o, 'keepers', true)), fieldInt(where, o, 'since', 0));
    }
    for (const m of s.modes === undefined ? [] : asArray('checkpoint modes', s.modes)) {
      const o = asObj('checkpoint mode', m);
      const where = 'checkpoint mode';
      const id = fieldKeeperName(where, o, 'id');
      const mode = o.mode;
      if (!this.keepersById.has(id)) throw new DfsError('INVALID_ARGUMENT', `${where}: keeper ${id} is not registered`);
      if (typeof mode !== 'string' || mode === 'normal' || !(KEEPER_MODES as readonly string[]).includes(mode)) {
        throw new DfsError('INVALID_ARGUMENT', `${where}: mode must be maintenance or draining, got ${JSON.stringify(mode)}`);
      }
      this.modesById.set(id, Object.freeze({ id, mode: mode as KeeperModeName, until: fieldInt(where, o, 'until', 0) }));
    }
  }

  private loadChunkId(where: string, o: Record<string, unknown>): string {
    const id = fieldId(where, o, 'id');
    if (this.chunkTable.find(id) >= 0 || this.uploadChunks.has(id) || this.garbageById.has(id)) {
      throw new DfsError('INVALID_ARGUMENT', `${where}: chunk ${id} appears twice`);
    }
    return id;
  }

  private loadKeepers(where: string, o: Record<string, unknown>, key: string, nonEmpty: boolean): string[] {
    const ids = fieldKeeperList(where, o, key, nonEmpty);
    for (const id of ids) {
      if (!this.keepersById.has(id)) throw new DfsError('INVALID_ARGUMENT', `${where}: keeper ${id} is not registered`);
    }
    return ids;
  }
}

function asObj(where: string, v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new DfsError('INVALID_ARGUMENT', `${where}: expected a JSON object`);
  }
  return v as Record<string, unknown>;
}

function asArray(where: string, v: unknown): unknown[] {
  if (!Array.isArray(v)) throw new DfsError('INVALID_ARGUMENT', `${where}: expected an array`);
  return v;
}
