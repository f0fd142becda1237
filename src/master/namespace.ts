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
  type KeeperModeName,
  type MarkGarbageEntry,
  KEEPER_MODES,
  type MkdirEntry,
  type RegisterKeeperEntry,
  type RemoveEntry,
  type RenameEntry,
  type UpdateReplicasEntry,
} from './entries.js';
import { checkPath, isSameOrBelow, joinNames, parentPath, pathProblem, splitPath } from './paths.js';

import type {
  AbortUploadResult,
  AllocateChunksResult,
  BeginUploadResult,
  ChunkInfo,
  ChunkLocation,
  ChunkOwner,
  CommitFileResult,
  EntryResults,
  ForgetGarbageResult,
  GarbageChunk,
  KeeperModeInfo,
  KeeperModeResult,
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

interface DirNode {
  readonly kind: 'dir';
  name: string;
  parent: DirNode | null;
  mtime: number;
  readonly children: Map<string, Node>;
}

interface FileNode {
  readonly kind: 'file';
  name: string;
  parent: DirNode;
  mtime: number;
  readonly size: number;
  readonly replication: number;
  readonly chunkSize: number;
  readonly uploadId: string;
  /** Frozen records; update-replicas swaps a record, never edits one, so handed-out copies stay true. */
  readonly chunks: ChunkInfo[];
}

type Node = DirNode | FileNode;

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

interface FileChunkRef {
  readonly file: FileNode;
  readonly index: number;
}

type Mutation<R> = () => R;

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const byKey = <K extends string>(key: K) => (a: Record<K, string>, b: Record<K, string>) =>
  a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0;

function freezeChunk(id: string, size: number, sha256: string, replicas: readonly string[]): ChunkInfo {
  return Object.freeze({ id, size, sha256, replicas: Object.freeze(replicas.slice()) });
}

function pathOf(node: Node): string {
  if (node.parent === null) return '/';
  const names: string[] = [];
  for (let n: Node | null = node; n !== null && n.parent !== null; n = n.parent) names.push(n.name);
  return '/' + names.reverse().join('/');
}

export class MetadataState {
  private readonly root: DirNode = { kind: 'dir', name: '', parent: null, mtime: 0, children: new Map() };
  private readonly uploadsById = new Map<string, Upload>();
  private readonly keepersById = new Map<string, KeeperRecord>();
  private readonly garbageById = new Map<string, GarbageRecord>();
  /** Keepers an operator put in maintenance or draining; absent means normal. */
  private readonly modesById = new Map<string, KeeperModeInfo>();
  /** Every chunk of a committed file, for replica updates and re-replication. */
  private readonly fileChunks = new Map<string, FileChunkRef>();
  /** Every chunk allocated to a pending upload. */
  private readonly uploadChunks = new Map<string, Upload>();
  /** Keeper id -> ids of committed chunks it holds: what to re-replicate when it dies. */
  private readonly keeperChunks = new Map<string, Set<string>>();
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
        if (child.kind === 'file') {
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
          `mkdir ${path}: ${path} already exists${existing.kind === 'file' ? ' and is a file' : ''}`,
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
        const child: DirNode = { kind: 'dir', name: names[i], parent, mtime, children: new Map() };
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
    const old = parent.children.get(name) as FileNode | undefined;
    return () => {
      let garbageChunks = 0;
      if (old !== undefined) garbageChunks += this.dropFile(old, mtime);
      const file: FileNode = {
        kind: 'file',
        name,
        parent,
        mtime,
        size,
        replication: upload.replication,
        chunkSize: upload.chunkSize,
        uploadId: upload.uploadId,
        chunks: [],
      };
      for (const c of e.chunks) this.addFileChunk(file, freezeChunk(c.id, c.size, c.sha256, c.replicas));
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
    if (node.kind === 'dir' && node.children.size > 0 && !e.recursive) {
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
    if (node.kind === 'dir' && isSameOrBelow(dst, src)) {
      throw new DfsError('INVALID_ARGUMENT', `${where}: a directory cannot be moved into itself`);
    }
    if (dstNames.length === 0) throw new DfsError('INVALID_ARGUMENT', `${where}: the root directory cannot be replaced`);
    const dstParent = this.parentDir('rename', dst, dstNames);
    const dstName = dstNames[dstNames.length - 1];
    const target = dstParent.children.get(dstName);
    if (target !== undefined) {
      if (node.kind === 'file' && target.kind === 'dir') {
        throw new DfsError('IS_A_DIRECTORY', `${where}: ${dst} is a directory and cannot be replaced by a file`);
      }
      if (node.kind === 'dir' && target.kind === 'file') {
        throw new DfsError('NOT_A_DIRECTORY', `${where}: ${dst} is a file and cannot be replaced by a directory`);
      }
      if (target.kind === 'dir' && target.children.size > 0) {
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
      node.name = dstName;
      node.parent = dstParent;
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
    const ref = this.fileChunks.get(e.chunkId);
    if (ref === undefined) throw new DfsError('NOT_FOUND', `${where}: no committed file holds this chunk`);
    for (const id of e.add) {
      if (e.remove.includes(id)) throw new DfsError('INVALID_ARGUMENT', `${where}: keeper ${id} is both added and removed`);
    }
    this.checkKeepersKnown(where, e.add);
    return () => {
      const old = ref.file.chunks[ref.index];
      const replicas = old.replicas.filter((k) => !e.remove.includes(k));
      for (const k of e.add) if (!replicas.includes(k)) replicas.push(k);
      const dropped = old.replicas.filter((k) => !replicas.includes(k));
      for (const k of dropped) this.unindexReplica(k, old.id);
      for (const k of replicas) this.indexReplica(k, old.id);
      // The keeper may still hold the bytes: collect them, unless a later entry adds it back.
      this.addGarbage(old.id, dropped, e.mtime);
      this.dropGarbageOn(old.id, e.add);
      const chunk = freezeChunk(old.id, old.size, old.sha256, replicas);
      ref.file.chunks[ref.index] = chunk;
      return { replicas: chunk.replicas };
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
        const ref = this.fileChunks.get(id);
        const inUse = ref === undefined ? [] : ref.file.chunks[ref.index].replicas;
        const unused = keepers.filter((k) => !inUse.includes(k));
        this.addGarbage(id, unused, e.mtime);
        marked += unused.length;
      }
      return { marked };
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
      if (child.kind === 'file') throw this.fileInTheWay(op, path, names, i);
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
    if (parent.children.get(names[names.length - 1])?.kind === 'dir') {
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
    if (this.fileChunks.has(id) || this.uploadChunks.has(id) || this.garbageById.has(id)) {
      throw new DfsError('ALREADY_EXISTS', `${where}: chunk id ${id} is already in use; allocate a fresh random id`);
    }
  }

  private checkKeepersKnown(where: string, ids: readonly string[]): void {
    for (const id of ids) {
      if (!this.keepersById.has(id)) throw new DfsError('NOT_FOUND', `${where}: keeper ${id} is not registered`);
    }
  }

  // ---- mutations (never throw) ---------------------------------------------------------------

  private addFileChunk(file: FileNode, chunk: ChunkInfo): void {
    this.fileChunks.set(chunk.id, { file, index: file.chunks.length });
    file.chunks.push(chunk);
    for (const k of chunk.replicas) this.indexReplica(k, chunk.id);
  }

  private indexReplica(keeper: string, chunkId: string): void {
    let set = this.keeperChunks.get(keeper);
    if (set === undefined) this.keeperChunks.set(keeper, (set = new Set()));
    set.add(chunkId);
  }

  private unindexReplica(keeper: string, chunkId: string): void {
    const set = this.keeperChunks.get(keeper);
    if (set !== undefined && set.delete(chunkId) && set.size === 0) this.keeperChunks.delete(keeper);
  }

  /** Adds copies to the garbage record of a chunk; a record's time is that of its newest copy. */
  private addGarbage(id: string, keepers: readonly string[], since: number): void {
    if (keepers.length === 0) return;
    const old = this.garbageById.get(id);
    if (old === undefined) {
      this.garbageById.set(id, { keepers: Object.freeze(keepers.slice()), since });
      return;
    }
    const merged = old.keepers.slice();
    for (const k of keepers) if (!merged.includes(k)) merged.push(k);
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
  private dropFile(file: FileNode, since: number): number {
    for (const chunk of file.chunks) {
      this.fileChunks.delete(chunk.id);
      for (const k of chunk.replicas) this.unindexReplica(k, chunk.id);
      this.addGarbage(chunk.id, chunk.replicas, since);
    }
    this.fileCount--;
    this.byteCount -= file.size;
    return file.chunks.length;
  }

  /** Drops a detached subtree; iterative, because a path may nest two thousand directories deep. */
  private dropTree(top: Node, since: number): RemoveResult {
    let files = 0;
    let dirs = 0;
    let garbageChunks = 0;
    const stack: Node[] = [top];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.kind === 'file') {
        garbageChunks += this.dropFile(node, since);
        files++;
      } else {
        for (const child of node.children.values()) stack.push(child);
        dirs++;
      }
    }
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
      if (child.kind === 'file') return undefined;
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

  private findFile(op: string, path: string): FileNode {
    const node = this.find(op, path);
    if (node.kind === 'dir') throw new DfsError('IS_A_DIRECTORY', `${op} ${path}: ${path} is a directory`);
    return node;
  }

  private static listEntry(node: Node): ListEntry {
    return node.kind === 'file'
      ? { name: node.name, type: 'file', size: node.size, replication: node.replication, mtime: node.mtime, chunks: node.chunks.length }
      : { name: node.name, type: 'dir', size: 0, replication: 0, mtime: node.mtime, chunks: node.children.size };
  }

  /** What is at `path`, or undefined when nothing is. Throws only for a malformed path. */
  lookup(path: string): ListEntry | undefined {
    const node = this.resolve('lookup', path);
    return node === undefined ? undefined : MetadataState.listEntry(node);
  }

  /** The entries of a directory, sorted by name (UTF-16 code units, the same on every host). */
  list(dirPath: string): ListEntry[] {
    const node = this.find('list', dirPath);
    if (node.kind === 'file') throw new DfsError('NOT_A_DIRECTORY', `list ${dirPath}: ${dirPath} is a file`);
    const out: ListEntry[] = [];
    for (const child of node.children.values()) out.push(MetadataState.listEntry(child));
    return out.sort(byName);
  }

  stat(path: string): Stat {
    const node = this.find('stat', path);
    if (node.kind === 'dir') return { type: 'dir', path, mtime: node.mtime, entries: node.children.size };
    return {
      type: 'file',
      path,
      size: node.size,
      replication: node.replication,
      chunkSize: node.chunkSize,
      mtime: node.mtime,
      uploadId: node.uploadId,
      chunks: node.chunks.slice(),
    };
  }

  /** The chunks of a file in order, with their byte offsets and the keepers holding them. */
  chunkLocations(path: string): ChunkLocation[] {
    const file = this.findFile('locate chunks of', path);
    return file.chunks.map((c, i) => ({ ...c, offset: i * file.chunkSize }));
  }

  /** Which file holds a committed chunk, or undefined. */
  chunkOwner(chunkId: string): ChunkOwner | undefined {
    const ref = this.fileChunks.get(chunkId);
    if (ref === undefined) return undefined;
    return { chunk: ref.file.chunks[ref.index], path: pathOf(ref.file), index: ref.index, replication: ref.file.replication };
  }

  /** Ids of committed chunks with a replica on the keeper, in no particular order. */
  chunksOnKeeper(keeperId: string): string[] {
    return [...(this.keeperChunks.get(keeperId) ?? [])];
  }

  /** Chunks no file or upload references any more, oldest first in the order they became garbage. */
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
  chunkIds(): IterableIterator<string> {
    return this.fileChunks.keys();
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
      chunks: this.fileChunks.size,
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
      root: snapshotDir(this.root),
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
      const at = pathOf(dir);
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
          const sub: DirNode = { kind: 'dir', name, parent: dir, mtime, children: new Map() };
          dir.children.set(name, sub);
          this.dirCount++;
          stack.push([sub, o.children]);
        } else if (o.type === 'file') {
          const file: FileNode = {
            kind: 'file',
            name,
            parent: dir,
            mtime,
            size: fieldInt(where, o, 'size', 0),
            replication: fieldInt(where, o, 'replication', 1, MAX_REPLICATION),
            chunkSize: fieldInt(where, o, 'chunkSize', 1, MAX_CHUNK_SIZE),
            uploadId: fieldId(where, o, 'uploadId'),
            chunks: [],
          };
          let total = 0;
          for (const c of asArray(`${where} chunks`, o.chunks)) {
            const co = asObj(`${where} chunk`, c);
            const chunk = freezeChunk(
              this.loadChunkId(where, co),
              fieldInt(where, co, 'size', 1, file.chunkSize),
              fieldSha256(where, co, 'sha256'),
              this.loadKeepers(where, co, 'replicas', false),
            );
            total += chunk.size;
            this.addFileChunk(file, chunk);
          }
          if (total !== file.size) {
            throw new DfsError('INVALID_ARGUMENT', `${where}: chunks hold ${total} bytes but the file has ${file.size}`);
          }
          dir.children.set(name, file);
          this.fileCount++;
          this.byteCount += file.size;
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
    if (this.fileChunks.has(id) || this.uploadChunks.has(id) || this.garbageById.has(id)) {
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

function snapshotDir(dir: DirNode): SnapshotDir {
  const children: SnapshotNode[] = [];
  for (const child of [...dir.children.values()].sort(byName)) {
    children.push(
      child.kind === 'dir'
        ? snapshotDir(child)
        : {
            type: 'file',
            name: child.name,
            mtime: child.mtime,
            size: child.size,
            replication: child.replication,
            chunkSize: child.chunkSize,
            uploadId: child.uploadId,
            chunks: child.chunks.map((c) => ({ id: c.id, size: c.size, sha256: c.sha256, replicas: c.replicas.slice() })),
          },
    );
  }
  return { type: 'dir', name: dir.name, mtime: dir.mtime, children };
}
