// The dfs client: namespace operations on the master, file contents on the keepers.
// Every method takes an AbortSignal and fails with a DfsError whose `code` is stable.

import { formatAddress, parseAddress, type Address } from '../transport/index.js';
import { DfsError } from '../wire/errors.js';
import { decodeRecord, type Decoded } from '../wire/fields.js';
import {
  BALANCE, CHUNKS_BODY, CHUNK_INFO, ENTRY_INFO, FSCK, FSCK_BODY, KEEPER_ADMIN, KeeperMode, LIST, LIST_BODY, MKDIR,
  NodeType, REMOVE, RENAME, REPORT_CORRUPT, STAT, STATUS, STATUS_BODY, KEEPER_MODE_NAMES, KEEPER_MODE_VALUES, FILE_HEALTH_NAMES,
} from '../protocol/ops.js';
import { WorkerPool } from '../workers/pool.js';
import { checkPath } from '../master/paths.js';
import type { UploadSource } from './chunker.js';
import { ConnectionCache } from './connections.js';
import { DfsReadStream, type GetOptions } from './download.js';
import { MasterLink } from './master-link.js';
import { upload, type PutOptions } from './upload.js';
import type {
  ChunkLocation, ClusterStatus, EntryInfo, FsckResult, KeeperModeName, KeeperModeResult, PutResult, StatInfo,
} from './types.js';


export interface ConnectOptions {
  /** The master, as HOST:PORT or an Address. */
  master: string | Address;
  signal?: AbortSignal;
  /** Time allowed to reach a master or keeper. Default 10 s. */
  connectTimeoutMs?: number;
  /** Workers that hash chunks. Default: a pool of the client's own, closed by close(). */
  pool?: WorkerPool;
}

export interface SignalOption {
  signal?: AbortSignal;
}

/** Connects to the master (so a wrong address fails here, clearly) and returns a client. */
export async function connect(options: ConnectOptions): Promise<DfsClient> {
  const master = typeof options.master === 'string' ? formatAddress(parseAddress(options.master, 'master address')) : formatAddress(options.master);
  const cache = new ConnectionCache({ connectTimeoutMs: options.connectTimeoutMs });
  try {
    await cache.get(master, options.signal);
  } catch (err) {
    await cache.close();
    if (err instanceof DfsError && err.code !== 'CANCEL') {
      const why = err.message.replace(`cannot connect to ${master}: `, '');
      throw new DfsError(err.code === 'DEADLINE_EXCEEDED' ? 'UNAVAILABLE' : err.code, `cannot reach master ${master}: ${why}`, { cause: err });
    }
    throw err;
  }
  return new DfsClient(cache, master, options.pool);
}

export class DfsClient {
  private readonly masterLink: MasterLink;
  private ownPool: WorkerPool | null = null;
  private readonly readsInFlight = new Map<string, number>();
  private closed = false;

  /** Use connect(); the constructor is for tests that bring their own cache. */
  constructor(private readonly cache: ConnectionCache, readonly master: string, private readonly sharedPool?: WorkerPool) {
    this.masterLink = new MasterLink(cache, master);
  }

  /**
   * Stores `source` as the file `path`, replacing any file there once the upload commits. The file
   * is invisible until every chunk has enough replicas; on failure or abort nothing appears.
   */
  async put(path: string, source: UploadSource, options: PutOptions = {}): Promise<PutResult> {
    this.assertOpen();
    checkPath('put', path);
    return upload({ master: this.masterLink, keepers: this.cache, pool: () => this.pool() }, path, source, options);
  }

  /**
   * Opens the file `path` for reading. Resolves once its chunk list is known (so NOT_FOUND and
   * IS_A_DIRECTORY reject here); the stream then errors if every replica of a chunk fails.
   */
  async get(path: string, options: GetOptions = {}): Promise<DfsReadStream> {
    this.assertOpen();
    checkPath('get', path);
    const info = await this.stat(path, options);
    if (info.type !== 'file') throw new DfsError('IS_A_DIRECTORY', `get ${path}: is a directory`);
    const total = info.chunks.reduce((n, c) => n + c.size, 0);
    if (total !== info.size) {
      throw new DfsError('INTERNAL_ERROR', `get ${path}: the master lists ${total} bytes of chunks for a file of ${info.size} bytes`);
    }
    const reportCorrupt = (chunkId: string, keeperId: string, message: string) => {
      // Best effort: the read itself already failed over; the master only asks the keeper to check.
      this.masterLink.call(REPORT_CORRUPT, { chunkId, keeperId, message: message.slice(0, 512) }).catch(() => undefined);
    };
    return new DfsReadStream({ keepers: this.cache, pool: () => this.pool(), readsInFlight: this.readsInFlight, reportCorrupt }, info, options);
  }

  /** The entries of directory `path`, in the master's order. */
  async list(path: string, options: SignalOption = {}): Promise<EntryInfo[]> {
    this.assertOpen();
    checkPath('ls', path);
    const { body } = await this.masterLink.call(LIST, { path }, { signal: options.signal, idempotent: true });
    return decodeRecord(LIST_BODY, body).entries.map(toEntry);
  }

  /** What `path` is; for a file, its chunks and where each replica lives. */
  async stat(path: string, options: SignalOption = {}): Promise<StatInfo> {
    this.assertOpen();
    checkPath('stat', path);
    const { response, body } = await this.masterLink.call(STAT, { path }, { signal: options.signal, idempotent: true });
    const entry = toEntry(response);
    const chunks = entry.type === 'file' && body.length > 0 ? decodeRecord(CHUNKS_BODY, body).chunks.map(toChunk) : [];
    return { ...entry, path, chunks };
  }

  async remove(path: string, options: SignalOption & { recursive?: boolean } = {}): Promise<void> {
    this.assertOpen();
    checkPath('rm', path);
    await this.masterLink.call(REMOVE, { path, recursive: options.recursive ?? false }, { signal: options.signal });
  }

  async mkdir(path: string, options: SignalOption & { parents?: boolean } = {}): Promise<void> {
    this.assertOpen();
    checkPath('mkdir', path);
    await this.masterLink.call(MKDIR, { path, parents: options.parents ?? false }, { signal: options.signal });
  }

  async rename(src: string, dst: string, options: SignalOption = {}): Promise<void> {
    this.assertOpen();
    checkPath('mv', src);
    checkPath('mv', dst);
    await this.masterLink.call(RENAME, { src, dst }, { signal: options.signal });
  }

  /** The keepers the master knows, alive or dead, with their space and load. */
  async status(options: SignalOption = {}): Promise<ClusterStatus> {
    this.assertOpen();
    const { response, body } = await this.masterLink.call(STATUS, {}, { signal: options.signal, idempotent: true });
    const keepers = body.length > 0 ? decodeRecord(STATUS_BODY, body).keepers : [];
    return {
      files: response.files,
      chunks: response.chunks,
      underReplicated: response.underReplicated ?? 0,
      missing: response.missing ?? 0,
      repairsInFlight: response.repairsInFlight ?? 0,
      repaired: response.repaired ?? 0,
      repairBytesPerS: response.repairBytesPerS ?? 0,
      garbage: response.garbage ?? 0,
      keepers: keepers.map((k) => ({
        id: k.id, address: k.address, zone: k.zone, alive: k.alive, capacity: k.capacity, used: k.used, chunks: k.chunks,
        load: k.load, lastSeenMs: k.lastSeenMs, mode: KEEPER_MODE_NAMES[k.mode ?? KeeperMode.NORMAL] ?? 'normal', modeUntil: k.modeUntil ?? 0,
        acceptingWrites: k.acceptingWrites ?? true, diskError: k.diskError ?? '', drained: k.drained ?? false,
      })),
    };
  }

  /** The health of every file under `path`: healthy, under-replicated, corrupt or missing. */
  async fsck(path: string, options: SignalOption & { all?: boolean } = {}): Promise<FsckResult> {
    this.assertOpen();
    checkPath('fsck', path);
    const { response, body } = await this.masterLink.call(FSCK, { path, all: options.all ?? false }, { signal: options.signal, idempotent: true });
    const files = body.length > 0 ? decodeRecord(FSCK_BODY, body).files : [];
    return {
      ...response,
      list: files.map((f) => ({ ...f, health: FILE_HEALTH_NAMES[f.health] ?? 'missing' })),
    };
  }

  /**
   * Sets a keeper's mode. `maintenance` (for `durationMs`, default 30 min) keeps a planned restart from
   * starting repairs; `draining` moves every replica off it; `normal` ends either. The keeper is named
   * by its id, a unique prefix of it, or its address.
   */
  async keeperMode(keeper: string, mode: KeeperModeName, options: SignalOption & { durationMs?: number } = {}): Promise<KeeperModeResult> {
    this.assertOpen();
    const value = KEEPER_MODE_VALUES[mode];
    if (value === undefined) throw new DfsError('INVALID_ARGUMENT', `keeper mode must be normal, maintenance or draining, got ${JSON.stringify(mode)}`);
    const durationMs = options.durationMs ?? 0;
    if (!Number.isSafeInteger(durationMs) || durationMs < 0) throw new DfsError('INVALID_ARGUMENT', `maintenance duration must be a non-negative integer of ms, got ${durationMs}`);
    const { response } = await this.masterLink.call(KEEPER_ADMIN, { keeperId: keeper, mode: value, durationMs }, { signal: options.signal });
    return { keeperId: response.keeperId ?? keeper, mode: KEEPER_MODE_NAMES[response.mode] ?? mode, until: response.until, drained: response.drained };
  }

  /**
   * Removes a keeper from the cluster's records for good: it must be stopped, and hold no replica a
   * file needs (drain it first). Returns its whole id.
   */
  async forgetKeeper(keeper: string, options: SignalOption = {}): Promise<string> {
    this.assertOpen();
    const { response } = await this.masterLink.call(KEEPER_ADMIN, { keeperId: keeper, mode: KeeperMode.FORGET, durationMs: 0 }, { signal: options.signal });
    return response.keeperId ?? keeper;
  }

  /** Schedules moves that even out disk use across keepers; returns how many were scheduled. */
  async balance(options: SignalOption & { thresholdPercent?: number } = {}): Promise<number> {
    this.assertOpen();
    const thresholdPercent = options.thresholdPercent ?? 10;
    if (!Number.isInteger(thresholdPercent) || thresholdPercent < 0 || thresholdPercent > 100) {
      throw new DfsError('INVALID_ARGUMENT', `balance threshold must be a whole percentage 0..100, got ${thresholdPercent}`);
    }
    const { response } = await this.masterLink.call(BALANCE, { thresholdPercent }, { signal: options.signal });
    return response.moves;
  }

  /** Closes every connection gracefully and stops the client's workers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.cache.close();
    await this.ownPool?.close();
  }

  private pool(): WorkerPool {
    if (this.sharedPool) return this.sharedPool;
    this.ownPool ??= new WorkerPool();
    return this.ownPool;
  }

  private assertOpen(): void {
    if (this.closed) throw new DfsError('CANCEL', 'the dfs client is closed');
  }
}

function toEntry(e: Decoded<typeof ENTRY_INFO>): EntryInfo {
  return {
    name: e.name,
    type: e.type === NodeType.DIRECTORY ? 'directory' : 'file',
    size: e.size,
    replication: e.replication,
    mtime: e.mtime,
    chunkSize: e.chunkSize,
    count: e.chunks,
  };
}

function toChunk(c: Decoded<typeof CHUNK_INFO>): ChunkLocation {
  return { id: c.id, size: c.size, sha256: c.sha256, replicas: c.replicas.map((r) => ({ id: r.id, address: r.address, alive: r.alive })) };
}
