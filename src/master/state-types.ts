// The shapes the metadata state machine hands out: query answers, apply results and checkpoints.
// All plain data, safe to serialise and to send to clients as they are.
import type { ChunkAllocation, KeeperModeName } from './entries.js';

// ---- what queries return ---------------------------------------------------------------------

export interface ChunkInfo {
  readonly id: string;
  readonly size: number;
  readonly sha256: string;
  readonly replicas: readonly string[];
}

export interface ChunkLocation extends ChunkInfo {
  /** Byte offset of the chunk in its file. */
  readonly offset: number;
}

export interface ListEntry {
  readonly name: string;
  readonly type: 'file' | 'dir';
  /** Bytes for a file; 0 for a directory. */
  readonly size: number;
  /** Replicas asked for; 0 for a directory. */
  readonly replication: number;
  readonly mtime: number;
  /** Chunks of a file; entries of a directory. */
  readonly chunks: number;
  /** Bytes per chunk of a file (the last may be shorter); 0 for a directory. */
  readonly chunkSize: number;
}

export interface FileStat {
  readonly type: 'file';
  readonly path: string;
  readonly size: number;
  readonly replication: number;
  readonly chunkSize: number;
  readonly mtime: number;
  /** The upload that wrote this version; a retried commit can recognise its own success by it. */
  readonly uploadId: string;
  readonly chunks: readonly ChunkInfo[];
}

export interface DirStat {
  readonly type: 'dir';
  readonly path: string;
  readonly mtime: number;
  readonly entries: number;
}

export type Stat = FileStat | DirStat;

export interface UploadInfo {
  readonly uploadId: string;
  readonly path: string;
  readonly replication: number;
  readonly chunkSize: number;
  readonly started: number;
  /** Time of the last entry that touched the upload: an upload idle for long is abandoned. */
  readonly touched: number;
  readonly chunks: readonly ChunkAllocation[];
}

export interface GarbageChunk {
  readonly id: string;
  /** Keepers that may hold a copy and should be told to delete it. */
  readonly keepers: readonly string[];
  /** When the chunk became garbage: collectors may wait a grace period for reads in flight. */
  readonly since: number;
}

export interface KeeperRecord {
  readonly id: string;
  readonly address: string;
  readonly zone: string;
  readonly capacity: number;
}

export interface ChunkOwner {
  readonly chunk: ChunkInfo;
  readonly path: string;
  readonly index: number;
  readonly replication: number;
}

export interface ChunkPlacement {
  readonly chunk: { readonly id: string; readonly size: number; readonly replicas: readonly string[] };
  readonly replication: number;
}

export interface MetadataStats {
  readonly dirs: number;
  readonly files: number;
  /** Logical bytes in committed files, before replication. */
  readonly bytes: number;
  readonly chunks: number;
  readonly uploads: number;
  readonly garbage: number;
  readonly keepers: number;
}

// ---- what apply returns ----------------------------------------------------------------------

export interface MkdirResult {
  /** Directories this entry created, shallowest first; empty when mkdir -p found them all. */
  readonly created: readonly string[];
}
export interface BeginUploadResult {
  readonly uploadId: string;
  readonly path: string;
}
export interface AllocateChunksResult {
  readonly uploadId: string;
  /** Chunks allocated to the upload so far. */
  readonly allocated: number;
}
export interface CommitFileResult {
  readonly path: string;
  /** True when an older version of the file was replaced. */
  readonly replaced: boolean;
  readonly garbageChunks: number;
}
export interface AbortUploadResult {
  readonly path: string;
  readonly garbageChunks: number;
}
export interface RemoveResult {
  readonly files: number;
  readonly dirs: number;
  readonly garbageChunks: number;
}
export interface RenameResult {
  /** True when a file or an empty directory at the destination was replaced. */
  readonly replaced: boolean;
  readonly garbageChunks: number;
}
export interface RegisterKeeperResult {
  readonly created: boolean;
}
export interface UpdateReplicasResult {
  readonly replicas: readonly string[];
}
export interface MarkGarbageResult {
  /** Copies recorded as garbage (those in use where they are were skipped). */
  readonly marked: number;
}
export interface KeeperModeResult {
  readonly mode: KeeperModeName;
  readonly until: number;
}
export interface ForgetKeeperResult {
  /** Garbage records that named the keeper. */
  readonly garbageReleased: number;
}
export interface KeeperModeInfo {
  readonly id: string;
  readonly mode: KeeperModeName;
  readonly until: number;
}
export interface ForgetGarbageResult {
  /** Garbage records dropped because no keeper is left in them. */
  readonly forgotten: number;
}

export interface EntryResults {
  'mkdir': MkdirResult;
  'begin-upload': BeginUploadResult;
  'allocate-chunks': AllocateChunksResult;
  'commit-file': CommitFileResult;
  'abort-upload': AbortUploadResult;
  'remove': RemoveResult;
  'rename': RenameResult;
  'register-keeper': RegisterKeeperResult;
  'update-replicas': UpdateReplicasResult;
  'forget-garbage': ForgetGarbageResult;
  'mark-garbage': MarkGarbageResult;
  'keeper-mode': KeeperModeResult;
  'forget-keeper': ForgetKeeperResult;
}

// ---- checkpoints -----------------------------------------------------------------------------

export interface SnapshotDir {
  readonly type: 'dir';
  readonly name: string;
  readonly mtime: number;
  /** Sorted by name, so equal states give equal snapshots whatever their history. */
  readonly children: readonly SnapshotNode[];
}

export interface SnapshotFile {
  readonly type: 'file';
  readonly name: string;
  readonly mtime: number;
  readonly size: number;
  readonly replication: number;
  readonly chunkSize: number;
  readonly uploadId: string;
  readonly chunks: readonly ChunkInfo[];
}

export type SnapshotNode = SnapshotDir | SnapshotFile;

/** Plain JSON with a fixed key order: JSON.stringify of equal states gives equal text. */
export interface MetadataSnapshot {
  readonly version: number;
  readonly root: SnapshotDir;
  readonly uploads: readonly UploadInfo[];
  readonly keepers: readonly KeeperRecord[];
  readonly garbage: readonly GarbageChunk[];
  /** Keepers not in the normal mode, by id; absent in checkpoints written before modes existed. */
  readonly modes?: readonly KeeperModeInfo[];
}
