// The master tracker: serves the namespace and placement over the wire, journals every change
// before acknowledging it, and tracks keeper health from heartbeats.

import { randomBytes } from 'node:crypto';
import { ensureDir } from '../util/ensure-dir.js';
import { DirLock } from '../util/dir-lock.js';
import { encodeRecord, decodeRecord } from '../wire/fields.js';
import { DfsError } from '../wire/errors.js';
import { RpcServer, readAll } from '../transport/rpc.js';
import { listen, formatAddress, type WireServer } from '../transport/net.js';
import {
  ABORT_UPLOAD, ALLOCATE_CHUNK, BEGIN_UPLOAD, CHUNKS_BODY, COMMIT, HEARTBEAT, LIST, LIST_BODY, MKDIR, NodeType, REMOVE,
  RENAME, STAT, STATUS, STATUS_BODY,
} from '../protocol/ops.js';
import { MetadataState } from './namespace.js';
import { MetadataStore } from './metadata-store.js';
import { KeeperRegistry } from './keeper-registry.js';
import { DEFAULT_MIN_REPLICAS, placeReplicas } from './placement.js';
import { normalisePath } from './paths.js';
import type { Entry } from './entries.js';

export interface MasterOptions {
  host?: string;
  port?: number;
  dataDir: string;
  /** A keeper silent this long is dead. */
  deadAfterMs?: number;
  heartbeatMs?: number;
  /** Fewest durable replicas a chunk write needs. */
  minReplicas?: number;
  defaultReplication?: number;
  /** Checkpoint once the journal segment holds this many entries (default 100,000)... */
  checkpointEntries?: number;
  /** ... or this many bytes (default 64 MiB). A checkpoint is also made at clean shutdown. */
  checkpointBytes?: number;
  log?: (line: string) => void;
}

export interface MasterHandle {
  readonly address: string;
  readonly state: MetadataState;
  /** Keepers whose heartbeats arrive in time. */
  aliveKeepers(): number;
  close(): Promise<void>;
}

const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
const newId = () => randomBytes(16).toString('hex');

export async function startMaster(options: MasterOptions): Promise<MasterHandle> {
  await ensureDir(options.dataDir);
  // Two masters appending to one journal would corrupt it: the directory is locked, as a keeper's is.
  const lock = await DirLock.acquire(options.dataDir);
  try {
    return await open(options, lock);
  } catch (err) {
    await lock.release();
    throw err;
  }
}

async function open(options: MasterOptions, lock: DirLock): Promise<MasterHandle> {
  const log = options.log ?? (() => {});
  const store = await MetadataStore.open({
    dir: options.dataDir, checkpointEntries: options.checkpointEntries, checkpointBytes: options.checkpointBytes, log,
  });
  const state: MetadataState = store.state;

  const keepers = new KeeperRegistry(options.deadAfterMs ?? 3000);
  const minReplicas = options.minReplicas ?? DEFAULT_MIN_REPLICAS;
  const defaultReplication = options.defaultReplication ?? 3;

  /** Applies (validating against the current state), then makes it durable before the caller replies. */
  async function commit<E extends Entry>(entry: E) {
    const result = state.apply(entry);
    await store.append(entry);
    return result;
  }

  const replicaView = (ids: readonly string[]) => ids.map((id) => ({
    id, address: keepers.address(id) ?? state.keeper(id)?.address ?? '', alive: keepers.isAlive(id),
  }));

  const rpc = new RpcServer();
  rpc.register(MKDIR, async ({ request }) => {
    await commit({ type: 'mkdir', path: normalisePath(request.path), parents: request.parents, mtime: Date.now() });
    return { response: {} };
  });
  rpc.register(LIST, ({ request }) => {
    const path = normalisePath(request.path);
    const info = state.lookup(path);
    if (!info) throw new DfsError('NOT_FOUND', `ls ${path}: no such file or directory`);
    const entries = info.type === 'dir' ? state.list(path) : [{ ...info, name: path.split('/').pop() ?? path }];
    const body = encodeRecord(LIST_BODY, {
      entries: entries.map((e) => ({
        name: e.name, type: e.type === 'dir' ? NodeType.DIRECTORY : NodeType.FILE, size: e.size, replication: e.replication,
        mtime: e.mtime, chunks: e.chunks, chunkSize: 0,
      })),
    });
    return { response: { count: entries.length }, body };
  });
  rpc.register(STAT, ({ request }) => {
    const path = normalisePath(request.path);
    const st = state.stat(path);
    const name = path === '/' ? '/' : path.split('/').pop()!;
    if (st.type === 'dir') {
      return { response: { name, type: NodeType.DIRECTORY, size: 0, replication: 0, mtime: st.mtime, chunks: st.entries, chunkSize: 0 } };
    }
    const body = encodeRecord(CHUNKS_BODY, {
      chunks: st.chunks.map((c) => ({ id: c.id, size: c.size, sha256: c.sha256, replicas: replicaView(c.replicas) })),
    });
    return {
      response: { name, type: NodeType.FILE, size: st.size, replication: st.replication, mtime: st.mtime, chunks: st.chunks.length, chunkSize: st.chunkSize },
      body,
    };
  });
  rpc.register(REMOVE, async ({ request }) => {
    await commit({ type: 'remove', path: normalisePath(request.path), recursive: request.recursive, mtime: Date.now() });
    return { response: {} };
  });
  rpc.register(RENAME, async ({ request }) => {
    await commit({ type: 'rename', src: normalisePath(request.src), dst: normalisePath(request.dst), mtime: Date.now() });
    return { response: {} };
  });
  rpc.register(BEGIN_UPLOAD, async ({ request }) => {
    const replication = request.replication || defaultReplication;
    const chunkSize = request.chunkSize;
    if (chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
      throw new DfsError('INVALID_ARGUMENT', `chunk size ${chunkSize} is outside 1..${MAX_CHUNK_SIZE}`);
    }
    const uploadId = newId();
    const path = normalisePath(request.path);
    // Like creating a file anywhere else, an upload brings its missing parent directories with it.
    const parent = path.slice(0, path.lastIndexOf('/')) || '/';
    if (parent !== '/' && state.lookup(parent) === undefined) {
      await commit({ type: 'mkdir', path: parent, parents: true, mtime: Date.now() });
    }
    await commit({ type: 'begin-upload', uploadId, path, replication, chunkSize, mtime: Date.now() });
    return { response: { uploadId, minReplicas: Math.min(minReplicas, replication) } };
  });
  rpc.register(ALLOCATE_CHUNK, async ({ request }) => {
    const upload = state.upload(request.uploadId);
    if (!upload) throw new DfsError('NOT_FOUND', `upload ${request.uploadId} is not open (aborted, committed or never begun)`);
    const placed = placeReplicas({
      keepers: keepers.placementView(), replication: upload.replication, chunkSize: request.size,
      random: Math.random, exclude: request.exclude ?? [],
    });
    const needed = Math.min(minReplicas, upload.replication);
    if (placed.length < needed) {
      const alive = keepers.all().filter((k) => k.alive).length;
      throw new DfsError('NOT_ENOUGH_KEEPERS',
        `only ${placed.length} keeper(s) can take a ${request.size}-byte chunk (${alive} alive); at least ${needed} replicas are required`);
    }
    const chunkId = newId();
    // Registered keepers only: the state machine refuses replicas on unknown keepers.
    await commit({ type: 'allocate-chunks', uploadId: upload.uploadId, chunks: [{ id: chunkId, replicas: placed }], mtime: Date.now() });
    return { response: { chunkId, keepers: placed.map((id) => ({ id, address: keepers.address(id)! })) } };
  });
  rpc.register(COMMIT, async ({ request, body }) => {
    const upload = state.upload(request.uploadId);
    const { chunks } = decodeRecord(CHUNKS_BODY, await readAll(body, 64 * 1024 * 1024));
    if (!upload) {
      throw new DfsError('NOT_FOUND', `upload ${request.uploadId} is not open (aborted, committed or never begun)`);
    }
    for (const c of chunks) {
      const durable = c.replicas.length;
      const needed = Math.min(minReplicas, upload.replication);
      if (durable < needed) {
        throw new DfsError('PIPELINE_FAILED', `chunk ${c.id} has ${durable} durable replica(s); at least ${needed} are required`);
      }
    }
    await commit({
      type: 'commit-file', uploadId: upload.uploadId, path: upload.path, size: request.size, mtime: Date.now(),
      chunks: chunks.map((c) => ({ id: c.id, size: c.size, sha256: c.sha256, replicas: c.replicas.map((r) => r.id) })),
    });
    return { response: {} };
  });
  rpc.register(ABORT_UPLOAD, async ({ request }) => {
    if (state.upload(request.uploadId)) await commit({ type: 'abort-upload', uploadId: request.uploadId, mtime: Date.now() });
    return { response: {} };
  });
  rpc.register(STATUS, () => {
    const stats = state.stats();
    const body = encodeRecord(STATUS_BODY, {
      keepers: keepers.all().map((k) => ({
        id: k.id, address: k.address, zone: k.zone, alive: k.alive, capacity: k.capacity, used: k.used, chunks: k.chunks,
        load: k.load, lastSeenMs: Math.max(0, Date.now() - k.lastSeen),
      })),
    });
    return { response: { files: stats.files, chunks: stats.chunks }, body };
  });
  rpc.register(HEARTBEAT, async ({ request }) => {
    const known = state.keeper(request.keeperId);
    if (!known || known.address !== request.address || known.zone !== request.zone || known.capacity !== request.capacity) {
      await commit({ type: 'register-keeper', id: request.keeperId, address: request.address, zone: request.zone, capacity: request.capacity });
    }
    const wasAlive = keepers.isAlive(request.keeperId);
    keepers.report({
      id: request.keeperId, address: request.address, zone: request.zone, capacity: request.capacity, used: request.used,
      chunks: request.chunks, load: request.load, acceptingWrites: request.acceptingWrites,
    });
    if (!wasAlive) log(`keeper ${request.keeperId} at ${request.address} is alive`);
    return { response: { intervalMs: options.heartbeatMs ?? 1000 } };
  });

  const server: WireServer = await listen({ host: options.host, port: options.port, agent: 'dfs-master/0.1' }, (conn) => rpc.serve(conn));
  const address = formatAddress(server.address);
  log(`master listening on ${address}, metadata in ${options.dataDir}`);

  // Report keepers that go silent, once.
  const deadSeen = new Set<string>();
  const watcher = setInterval(() => {
    for (const k of keepers.all()) {
      if (!k.alive && !deadSeen.has(k.id)) {
        deadSeen.add(k.id);
        log(`keeper ${k.id} at ${k.address} is dead: no heartbeat for ${Date.now() - k.lastSeen} ms`);
      } else if (k.alive) deadSeen.delete(k.id);
    }
  }, 500);
  watcher.unref();

  return {
    address,
    state,
    aliveKeepers: () => keepers.all().filter((k) => k.alive).length,
    async close() {
      clearInterval(watcher);
      await server.close();
      await store.close();
      await lock.release();
    },
  };
}
