// dfs: the client API. Servers and the wire engine are reached through the `dfs` command, not this entry.
export { connect, DfsClient, type ConnectOptions, type SignalOption } from './client/client.js';
export { DfsReadStream, type GetOptions } from './client/download.js';
export { type PutOptions } from './client/upload.js';
export { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, type UploadSource } from './client/chunker.js';
export type {
  ChunkLocation, ClusterStatus, EntryInfo, EntryType, FileHealthName, FsckFile, FsckResult, KeeperInfo, KeeperModeName,
  KeeperModeResult, PutProgress, PutResult, ReplicaInfo, StatInfo,
} from './client/types.js';
export { DfsError, type ErrorCode } from './wire/errors.js';
