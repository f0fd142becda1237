// An in-process stand-in for a master and its keepers, speaking the real dfs operations over real
// loopback sockets, with knobs to make keepers fail in the ways the client must survive: failed
// writes, refused connections, damaged or slow reads. It records what the client asked for.

import { createHash } from 'node:crypto';
import { DfsError, type ErrorCode } from '../../src/wire/errors.js';
import { decodeRecord, encodeRecord, type Decoded } from '../../src/wire/fields.js';
import { listen, readAll, RpcServer, type WireServer } from '../../src/transport/index.js';
import {
  ABORT_UPLOAD, ALLOCATE_CHUNK, BEGIN_UPLOAD, CHUNKS_BODY, CHUNK_INFO, COMMIT, LIST, LIST_BODY, MKDIR, NodeType,
  READ_CHUNK, REMOVE, RENAME, STAT, STATUS, STATUS_BODY, WRITE_CHUNK,
} from '../../src/protocol/ops.js';

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export interface FakeKeeper {
  id: string;
  address: string;
  server: WireServer | null;
  chunks: Map<string, Buffer>;
  /** Status this keeper reports for its own replica; NO_ERROR stores it. */
  writeStatus: ErrorCode;
  /** Reset WRITE_CHUNK streams opened to this keeper with this code. */
  writeReset: ErrorCode | null;
  /** Serve reads with one byte flipped. */
  corrupt: boolean;
  /** Never answer reads. */
  stall: boolean;
  /** Never answer writes. */
  stallWrites: boolean;
  writes: number;
  reads: number;
  writesInFlight: number;
  maxWritesInFlight: number;
  readsInFlight: number;
  maxReadsInFlight: number;
  /** Chunk ids in the order reads were asked for. */
  readLog: string[];
}

interface FileRecord {
  size: number;
  chunkSize: number;
  replication: number;
  chunks: Decoded<typeof CHUNK_INFO>[];
}

export interface FakeCluster {
  master: string;
  masterServer: WireServer;
  keepers: FakeKeeper[];
  files: Map<string, FileRecord>;
  dirs: Set<string>;
  /** Every ALLOCATE_CHUNK's exclude list, in order. */
  allocations: { chunkId: string; keepers: string[]; exclude: string[] }[];
  aborted: string[];
  committed: string[];
  begun: { path: string; replication: number; chunkSize: number }[];
  minReplicas: number;
  replication: number;
  stop(): Promise<void>;
  /** Stops one keeper's listener and drops its connections: further connects are refused. */
  kill(keeper: FakeKeeper): Promise<void>;
}

export async function startFakeCluster(options: { keepers?: number; minReplicas?: number; replication?: number } = {}): Promise<FakeCluster> {
  const keepers: FakeKeeper[] = [];
  const byAddress = new Map<string, FakeKeeper>();
  const cluster: FakeCluster = {
    master: '',
    masterServer: null as unknown as WireServer,
    keepers,
    files: new Map(),
    dirs: new Set(['/']),
    allocations: [],
    aborted: [],
    committed: [],
    begun: [],
    minReplicas: options.minReplicas ?? 2,
    replication: options.replication ?? 3,
    async stop() {
      await Promise.all(keepers.map((k) => k.server?.close()));
      await cluster.masterServer.close();
    },
    async kill(keeper) {
      const server = keeper.server;
      keeper.server = null;
      if (server) {
        for (const c of server.connections) c.destroy();
        await server.close();
      }
    },
  };

  for (let i = 0; i < (options.keepers ?? 4); i++) {
    const keeper: FakeKeeper = {
      id: `keeper-${i}`, address: '', server: null, chunks: new Map(), writeStatus: 'NO_ERROR', writeReset: null,
      corrupt: false, stall: false, stallWrites: false, writes: 0, reads: 0, writesInFlight: 0, maxWritesInFlight: 0,
      readsInFlight: 0, maxReadsInFlight: 0, readLog: [],
    };
    const rpc = new RpcServer();
    rpc.register(WRITE_CHUNK, async ({ request, body, signal }) => {
      keeper.writes++;
      if (keeper.stallWrites) await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      keeper.writesInFlight++;
      keeper.maxWritesInFlight = Math.max(keeper.maxWritesInFlight, keeper.writesInFlight);
      try {
        if (keeper.writeReset) throw new DfsError(keeper.writeReset, `${keeper.id} refuses writes`);
        const data = await readAll(body, 64 * 1024 * 1024);
        if (data.length !== request.size || sha256(data) !== request.sha256) {
          throw new DfsError('CHECKSUM_MISMATCH', `${keeper.id}: body does not match the declared size and digest`);
        }
        // The fake forwards by reaching into the other keepers directly: enough to test the writer.
        const acks = [keeper, ...request.downstream.map((a) => byAddress.get(a))].map((k, hop) => {
          if (k === undefined || k.server === null) {
            return { keeperId: '', address: request.downstream[hop - 1]!, status: 'UNAVAILABLE', message: 'unreachable' };
          }
          if (k.writeStatus === 'NO_ERROR') k.chunks.set(request.chunkId, Buffer.from(data));
          return { keeperId: k.id, address: k.address, status: k.writeStatus, ...(k.writeStatus === 'NO_ERROR' ? {} : { message: 'disk trouble' }) };
        });
        return { response: { acks } };
      } finally {
        keeper.writesInFlight--;
      }
    });
    rpc.register(READ_CHUNK, async ({ request, signal }) => {
      keeper.reads++;
      keeper.readLog.push(request.chunkId);
      keeper.readsInFlight++;
      keeper.maxReadsInFlight = Math.max(keeper.maxReadsInFlight, keeper.readsInFlight);
      try {
        if (keeper.stall) await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
        const data = keeper.chunks.get(request.chunkId);
        if (!data) throw new DfsError('NOT_FOUND', `chunk ${request.chunkId} is not on ${keeper.id}`);
        const out = Buffer.from(data);
        if (keeper.corrupt && out.length > 0) out[0]! ^= 0xff;
        return { response: { size: data.length, sha256: sha256(data) }, body: out };
      } finally {
        keeper.readsInFlight--;
      }
    });
    keeper.server = await listen({}, (conn) => rpc.serve(conn));
    keeper.address = `127.0.0.1:${keeper.server.address.port}`;
    keepers.push(keeper);
    byAddress.set(keeper.address, keeper);
  }

  const uploads = new Map<string, { path: string; replication: number; chunkSize: number }>();
  let nextId = 1;
  const rpc = new RpcServer();
  rpc.register(BEGIN_UPLOAD, ({ request }) => {
    const uploadId = `upload-${nextId++}`;
    const replication = request.replication || cluster.replication;
    uploads.set(uploadId, { path: request.path, replication, chunkSize: request.chunkSize });
    cluster.begun.push({ path: request.path, replication: request.replication, chunkSize: request.chunkSize });
    return { response: { uploadId, minReplicas: Math.min(cluster.minReplicas, replication) } };
  });
  rpc.register(ALLOCATE_CHUNK, ({ request }) => {
    const upload = uploads.get(request.uploadId);
    if (!upload) throw new DfsError('NOT_FOUND', `upload ${request.uploadId} is not open`);
    const exclude = request.exclude ?? [];
    // Rotate the starting keeper so pipelines differ from chunk to chunk.
    const start = cluster.allocations.length % keepers.length;
    const order = [...keepers.slice(start), ...keepers.slice(0, start)];
    const chosen = order.filter((k) => !exclude.includes(k.id)).slice(0, upload.replication);
    if (chosen.length < Math.min(cluster.minReplicas, upload.replication)) {
      throw new DfsError('NOT_ENOUGH_KEEPERS', `only ${chosen.length} keepers left after excluding ${exclude.join(', ')}`);
    }
    const chunkId = `chunk-${nextId++}`;
    cluster.allocations.push({ chunkId, keepers: chosen.map((k) => k.id), exclude });
    return { response: { chunkId, keepers: chosen.map((k) => ({ id: k.id, address: k.address })) } };
  });
  rpc.register(COMMIT, async ({ request, body }) => {
    const upload = uploads.get(request.uploadId);
    if (!upload) throw new DfsError('NOT_FOUND', `upload ${request.uploadId} is not open`);
    const { chunks } = decodeRecord(CHUNKS_BODY, await readAll(body, 64 * 1024 * 1024));
    uploads.delete(request.uploadId);
    cluster.committed.push(request.uploadId);
    cluster.files.set(upload.path, { size: request.size, chunkSize: upload.chunkSize, replication: upload.replication, chunks });
    return { response: {} };
  });
  rpc.register(ABORT_UPLOAD, ({ request }) => {
    uploads.delete(request.uploadId);
    cluster.aborted.push(request.uploadId);
    return { response: {} };
  });
  rpc.register(STAT, ({ request }) => {
    const file = cluster.files.get(request.path);
    if (cluster.dirs.has(request.path)) {
      return { response: { name: request.path, type: NodeType.DIRECTORY, size: 0, replication: 0, mtime: 1, chunks: 0, chunkSize: 0 } };
    }
    if (!file) throw new DfsError('NOT_FOUND', `stat ${request.path}: no such file or directory`);
    const alive = (id: string) => keepers.find((k) => k.id === id)?.server != null;
    const body = encodeRecord(CHUNKS_BODY, { chunks: file.chunks.map((c) => ({ ...c, replicas: c.replicas.map((r) => ({ ...r, alive: alive(r.id) })) })) });
    return {
      response: { name: request.path.slice(request.path.lastIndexOf('/') + 1), type: NodeType.FILE, size: file.size, replication: file.replication, mtime: 2, chunks: file.chunks.length, chunkSize: file.chunkSize },
      body,
    };
  });
  rpc.register(LIST, ({ request }) => {
    if (!cluster.dirs.has(request.path)) throw new DfsError('NOT_FOUND', `ls ${request.path}: no such directory`);
    const prefix = request.path === '/' ? '/' : `${request.path}/`;
    const entries = [...cluster.files].filter(([p]) => p.startsWith(prefix) && !p.slice(prefix.length).includes('/')).map(([p, f]) => ({
      name: p.slice(prefix.length), type: NodeType.FILE, size: f.size, replication: f.replication, mtime: 2, chunks: f.chunks.length, chunkSize: f.chunkSize,
    }));
    return { response: { count: entries.length }, body: encodeRecord(LIST_BODY, { entries }) };
  });
  rpc.register(MKDIR, ({ request }) => {
    if (cluster.dirs.has(request.path) && !request.parents) throw new DfsError('ALREADY_EXISTS', `mkdir ${request.path}: exists`);
    cluster.dirs.add(request.path);
    return { response: {} };
  });
  rpc.register(REMOVE, ({ request }) => {
    if (!cluster.files.delete(request.path) && !cluster.dirs.delete(request.path)) throw new DfsError('NOT_FOUND', `rm ${request.path}: no such file`);
    return { response: {} };
  });
  rpc.register(RENAME, ({ request }) => {
    const f = cluster.files.get(request.src);
    if (!f) throw new DfsError('NOT_FOUND', `mv ${request.src}: no such file`);
    cluster.files.delete(request.src);
    cluster.files.set(request.dst, f);
    return { response: {} };
  });
  rpc.register(STATUS, () => ({
    response: { files: cluster.files.size, chunks: [...cluster.files.values()].reduce((n, f) => n + f.chunks.length, 0) },
    body: encodeRecord(STATUS_BODY, {
      keepers: keepers.map((k) => ({
        id: k.id, address: k.address, zone: 'z', alive: k.server !== null, capacity: 1000, used: [...k.chunks.values()].reduce((n, c) => n + c.length, 0),
        chunks: k.chunks.size, load: 0, lastSeenMs: 5,
      })),
    }),
  }));
  cluster.masterServer = await listen({}, (conn) => rpc.serve(conn));
  cluster.master = `127.0.0.1:${cluster.masterServer.address.port}`;
  return cluster;
}
