// The keeper role: serves WRITE_CHUNK and READ_CHUNK from its chunk store, forwards pipeline
// writes to other keepers, and tells the master by heartbeat what it holds and can take.

import { statfs } from 'node:fs/promises';
import { resolve } from 'node:path';
import { RpcServer, formatAddress, listen, parseAddress, type Address, type WireServer } from '../transport/index.js';
import { READ_CHUNK, WRITE_CHUNK } from '../protocol/ops.js';
import { WorkerPool } from '../workers/pool.js';
import { DfsError } from '../wire/errors.js';
import { ChunkStore } from './chunk-store.js';
import { loadOrCreateKeeperId } from './keeper-id.js';
import { PeerPool } from './peer-pool.js';
import { HeartbeatLoop, type HeartbeatReport } from './heartbeat.js';
import { keeperAgent, writeChunkHandler } from './write-pipeline.js';
import { readChunkHandler } from './read-chunk.js';

export interface KeeperOptions {
  /** The master this keeper reports to. */
  master: Address;
  /** Where to accept connections; port 0 picks a free port. */
  listen: { host: string; port: number };
  /** Data directory: chunks, KEEPER_ID and LOCK. Created if missing. */
  dataDir: string;
  /** Bytes of chunk data this keeper may hold. Default: what the disk holds (free space plus chunks stored). */
  capacity?: number;
  /** Failure domain reported to the master, for placement. Default ''. */
  zone?: string;
  /** Time between heartbeats. Default 1000 ms. */
  heartbeatMs?: number;
  /** Address reported to the master and in acknowledgements. Default: the bound address. */
  advertise?: string;
  /** One line per event worth an operator's attention. Default: stderr. */
  log?: (line: string) => void;
  /** Worker threads for hashing and chunk IO; shared pools are not closed by the keeper. Default: a pool of its own. */
  pool?: WorkerPool;
  /** A pipeline hop that moves no bytes for this long fails. Default 30 s. */
  stallMs?: number;
}

export interface KeeperHandle {
  /** The advertised HOST:PORT (the bound one, with the actual port, unless `advertise` was given). */
  readonly address: string;
  /** Persistent keeper id, 32 hex digits. */
  readonly id: string;
  readonly store: ChunkStore;
  /** Requests in flight (WRITE_CHUNK and READ_CHUNK). */
  readonly load: number;
  /** What the next heartbeat would report. */
  report(): Promise<HeartbeatReport>;
  /** Graceful: stops heartbeats, sends GOAWAY and lets streams in flight finish, closes the store and workers. */
  close(): Promise<void>;
}

export async function startKeeper(options: KeeperOptions): Promise<KeeperHandle> {
  const heartbeatMs = options.heartbeatMs ?? 1000;
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 1) {
    throw new DfsError('INVALID_ARGUMENT', `heartbeatMs must be a positive integer, got ${heartbeatMs}`);
  }
  const log = options.log ?? ((line: string) => process.stderr.write(`keeper: ${line}\n`));
  const dataDir = resolve(options.dataDir);
  const ownPool = options.pool === undefined;
  const pool = options.pool ?? new WorkerPool();
  let store: ChunkStore | null = null;
  let server: WireServer | null = null;
  try {
    store = await ChunkStore.open(dataDir, {
      pool,
      ...(options.capacity === undefined ? {} : { capacity: options.capacity }),
    });
    const opened = store;
    const id = await loadOrCreateKeeperId(opened.dir);
    const report = store.report;
    if (report.removedTemp > 0 || report.quarantined.length > 0 || report.unreadable.length > 0) {
      log(`opened ${opened.dir}: ${report.chunks} chunks, ${report.removedTemp} interrupted writes removed, ` +
        `${report.quarantined.length} damaged files quarantined, ${report.unreadable.length} unreadable`);
    }

    let load = 0;
    const onActive = (delta: 1 | -1) => {
      load += delta;
    };
    let advertised = options.advertise ?? '';
    const peers = new PeerPool({ agent: keeperAgent(id) });
    const rpc = new RpcServer()
      .register(WRITE_CHUNK, writeChunkHandler({
        store: opened,
        peers,
        self: () => ({ keeperId: id, address: advertised }),
        onActive,
        ...(options.stallMs === undefined ? {} : { stallMs: options.stallMs }),
      }))
      .register(READ_CHUNK, readChunkHandler({ store: opened, log, onActive }));
    const wire = await listen({ host: options.listen.host, port: options.listen.port, agent: keeperAgent(id) }, (conn) => rpc.serve(conn));
    server = wire;
    if (!advertised) advertised = formatAddress(wire.address);
    else parseAddress(advertised, 'advertised keeper address');

    const zone = options.zone ?? '';
    const fullAt = (capacity: number) => Math.min(opened.maxChunkSize, Math.floor(capacity / 100));
    const buildReport = async (): Promise<HeartbeatReport> => {
      const used = opened.used();
      let capacity = options.capacity;
      if (capacity === undefined) {
        try {
          const fs = await statfs(opened.dir);
          capacity = used + fs.bavail * fs.bsize;
        } catch {
          capacity = used;
        }
      }
      capacity = Math.min(capacity, Number.MAX_SAFE_INTEGER);
      const free = capacity - used - opened.reserved();
      return {
        keeperId: id,
        address: advertised,
        zone,
        capacity,
        used,
        chunks: opened.count(),
        load,
        // Full when a chunk of the usual size would no longer fit (1% of a small capacity).
        acceptingWrites: free > 0 && free >= fullAt(capacity),
      };
    };

    const heartbeat = new HeartbeatLoop({
      master: options.master,
      intervalMs: heartbeatMs,
      report: buildReport,
      log,
      agent: keeperAgent(id),
    });
    heartbeat.start();
    log(`keeper ${id} serving ${advertised} from ${opened.dir}, reporting to master ${formatAddress(options.master)}`);

    let closing: Promise<void> | null = null;
    return {
      address: advertised,
      id,
      store: opened,
      get load() {
        return load;
      },
      report: buildReport,
      close() {
        closing ??= (async () => {
          await heartbeat.stop();
          await wire.close();
          await peers.close();
          await opened.close();
          if (ownPool) await pool.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await server?.close().catch(() => {});
    await store?.close().catch(() => {});
    if (ownPool) await pool.close();
    throw err;
  }
}
