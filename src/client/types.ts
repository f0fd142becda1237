// The shapes the dfs client API returns, in plain terms (no wire tags, no op codes).

import type { ErrorCode } from '../wire/errors.js';

export type EntryType = 'file' | 'directory';

/** One name in the namespace, as LIST and STAT describe it. */
export interface EntryInfo {
  name: string;
  type: EntryType;
  /** Bytes; 0 for directories. */
  size: number;
  /** Replicas each chunk should have; 0 for directories. */
  replication: number;
  /** Last modification, milliseconds since the epoch. */
  mtime: number;
  /** Bytes per chunk (the last may be shorter); 0 for directories. */
  chunkSize: number;
  /** Files: the number of chunks. Directories: the number of entries. */
  count: number;
}

export interface ReplicaInfo {
  /** The keeper's id. */
  id: string;
  /** HOST:PORT the keeper serves on. */
  address: string;
  /** Whether the master hears from that keeper now. */
  alive: boolean;
}

export interface ChunkLocation {
  id: string;
  size: number;
  /** Lowercase hex SHA-256 of the chunk's bytes. */
  sha256: string;
  replicas: ReplicaInfo[];
}

/** STAT of a path; `chunks` is in file order and empty for directories. */
export interface StatInfo extends EntryInfo {
  path: string;
  chunks: ChunkLocation[];
}

export interface KeeperInfo {
  id: string;
  address: string;
  zone: string;
  alive: boolean;
  /** Bytes of chunk data the keeper may hold. */
  capacity: number;
  /** Bytes of chunk data it holds. */
  used: number;
  chunks: number;
  load: number;
  /** Milliseconds since the master last heard from it. */
  lastSeenMs: number;
  /** The operator's mode: normal, maintenance (until `modeUntil`) or draining. */
  mode: KeeperModeName;
  /** End of a maintenance window, ms since the epoch; 0 otherwise. */
  modeUntil: number;
  /** False when it refuses new chunks: disk full, disk errors, or not in normal mode. */
  acceptingWrites: boolean;
  /** The keeper's last disk error; '' when none. */
  diskError: string;
  /** Draining, and no file needs it any more: safe to remove. */
  drained: boolean;
}

export type KeeperModeName = 'normal' | 'maintenance' | 'draining';

export interface ClusterStatus {
  files: number;
  chunks: number;
  /** Chunks with fewer good replicas than their replication factor (missing ones included). */
  underReplicated: number;
  /** Chunks with no replica on a live keeper. */
  missing: number;
  /** Copies between keepers in flight. */
  repairsInFlight: number;
  /** Chunks brought back to their replication factor since the master started. */
  repaired: number;
  /** Bytes per second copied between keepers over the last 10 s. */
  repairBytesPerS: number;
  /** Chunks waiting for garbage collection. */
  garbage: number;
  keepers: KeeperInfo[];
}

export type FileHealthName = 'healthy' | 'under-replicated' | 'corrupt' | 'missing';

export interface FsckFile {
  path: string;
  health: FileHealthName;
  chunks: number;
  underReplicated: number;
  corrupt: number;
  missing: number;
}

export interface FsckResult {
  files: number;
  healthy: number;
  underReplicated: number;
  corrupt: number;
  missing: number;
  /** Unhealthy files, or every file when asked for all. */
  list: FsckFile[];
}

export interface KeeperModeResult {
  /** The keeper's whole id. */
  keeperId: string;
  mode: KeeperModeName;
  /** End of the maintenance window, ms since the epoch; 0 otherwise. */
  until: number;
  drained: boolean;
}

export interface PutProgress {
  /** Bytes acknowledged by enough keepers so far. */
  bytes: number;
  /** Chunks acknowledged so far. */
  chunks: number;
}

export interface PutResult {
  path: string;
  size: number;
  chunks: number;
}

/** Why one replica could not be read or written, as kept in error messages. */
export interface ReplicaFailure {
  address: string;
  code: ErrorCode;
  message: string;
}
