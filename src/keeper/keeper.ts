// The keeper role: serves WRITE_CHUNK and READ_CHUNK from its chunk store, forwards pipeline
// writes to other keepers, tells the master by heartbeat what it holds and can take, reports its
// chunks, carries out the master's repair tasks and scrubs its disk for damage.

import { resolve } from 'node:path';
import { RpcServer, formatAddress, listen, parseAddress, type Address, type WireServer } from '../transport/index.js';
import { READ_CHUNK, WRITE_CHUNK } from '../protocol/ops.js';
import { WorkerPool } from '../workers/pool.js';
import { DfsError } from '../wire/errors.js';
import { ChunkStore, DEFAULT_MAX_CHUNK_SIZE } from './chunk-store.js';
import { loadOrCreateKeeperId } from './keeper-id.js';
import { PeerPool } from './peer-pool.js';
import { HeartbeatLoop, type HeartbeatReport } from './heartbeat.js';
import { keeperAgent, writeChunkHandler } from './write-pipeline.js';
import { readChunkHandler } from './read-chunk.js';
import { DamagedReplicas } from './damaged-replicas.js';
import { DiskHealth } from './disk-health.js';
import { ChunkReporter } from './chunk-report.js';
import { TaskRunner } from './tasks.js';
import { Scrubber } from './scrubber.js';

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
  /** Free bytes below which the keeper stops taking writes. Default: 64 MiB or 1% of the capacity, the smaller. */
  reserve?: number;
  /** A disk error stops writes for this long. Default 60 s. */
  diskErrorHoldMs?: number;
  /** Master tasks run at once. Default 4. */
  taskConcurrency?: number;
  /** Master tasks waiting to run; beyond it they are answered UNAVAILABLE. Default 1024. */
  taskQueue?: number;
  /** Bytes per second all COPY tasks together may send. Default 100 MiB/s. */
  repairBandwidth?: number;
  /** Bytes per second the scrubber re-hashes; 0 turns it off. Default max(stored / 6 days, 1 MiB/s). */
  scrubRate?: number;
  /** Chunks up to this many bytes go to pack files; 0 gives each chunk a file. Default 64 KiB. */
  packMax?: number;
  /** Time between looks for a pack of small chunks worth compacting. Default 30 s. */
  compactEveryMs?: number;
  /** Least time from the start of one scrub pass to the next. Default 1 minute. */
  scrubCycleMinMs?: number;
  /** Fewest ms between heartbeats sent early with results. Default 100. */
  heartbeatMinGapMs?: number;
  /** Ids per CHUNK_REPORT page. Default (and most) CHUNK_REPORT_PAGE. */
  chunkReportPage?: number;
}

export interface KeeperHandle {
  /** The advertised HOST:PORT (the bound one, with the actual port, unless `advertise` was given). */
  readonly address: string;
  /** Persistent keeper id, 32 hex digits. */
  readonly id: string;
  readonly store: ChunkStore;
  /** Requests in flight (WRITE_CHUNK and READ_CHUNK). */
  readonly load: number;
  /** The master's tasks: queued, running, results awaiting delivery. */
  readonly tasks: TaskRunner;
  /** The background check of every stored chunk; null when turned off. */
  readonly scrubber: Scrubber | null;
  /** Full chunk reports the master acknowledged. */
  readonly chunkReports: number;
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
  for (const [name, value, min] of [
    ['reserve', options.reserve, 0], ['taskQueue', options.taskQueue, 0], ['scrubRate', options.scrubRate, 0],
    ['taskConcurrency', options.taskConcurrency, 1], ['repairBandwidth', options.repairBandwidth, 1],
  ] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < min)) {
      throw new DfsError('INVALID_ARGUMENT', `${name} must be an integer of at least ${min}, got ${value}`);
    }
  }
  const log = options.log ?? ((line: string) => process.stderr.write(`keeper: ${line}\n`));
  const dataDir = resolve(options.dataDir);
  const ownPool = options.pool === undefined;
  const pool = options.pool ?? new WorkerPool();
  let store: ChunkStore | null = null;
  let server: WireServer | null = null;
  // Filled in below; the store and the trackers only call it once the keeper runs.
  let wakeHeartbeat = () => {};
  let damaged: DamagedReplicas | null = null;
  const health = new DiskHealth(dataDir, {
    maxChunkSize: DEFAULT_MAX_CHUNK_SIZE,
    ...(options.capacity === undefined ? {} : { capacity: options.capacity }),
    ...(options.reserve === undefined ? {} : { reserve: options.reserve }),
    ...(options.diskErrorHoldMs === undefined ? {} : { errorHoldMs: options.diskErrorHoldMs }),
    onChange: () => wakeHeartbeat(),
  });
  try {
    store = await ChunkStore.open(dataDir, {
      pool,
      ...(options.capacity === undefined ? {} : { capacity: options.capacity }),
      ...(options.packMax === undefined ? {} : { packMax: options.packMax }),
      diskFree: () => health.diskFree(),
      onDiskError: (err) => {
        // One line when writes stop, not one per failing request of a failing disk.
        if (health.noteError(err)) log(`disk error, taking no new chunks for a while: ${err.message}`);
      },
      onLost: (lostId, why) => damaged?.lost(lostId, why),
    });
    const opened = store;
    await health.measure();
    const found = new DamagedReplicas(opened, log, () => wakeHeartbeat());
    damaged = found;
    const id = await loadOrCreateKeeperId(opened.dir);
    const report = store.report;
    if (report.removedTemp > 0 || report.quarantined.length > 0 || report.unreadable.length > 0) {
      log(`opened ${opened.dir}: ${report.chunks} chunks, ${report.removedTemp} interrupted writes removed, ` +
        `${report.quarantined.length} damaged files quarantined, ${report.unreadable.length} unreadable`);
    }

    let load = 0;
    // Bound once the task runner exists, below; writes cannot arrive before the server listens.
    let cancelQueuedDeletes = (_chunkId: string): void => {};
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
        damaged: found,
        onWrite: (chunkId) => cancelQueuedDeletes(chunkId),
        ...(options.stallMs === undefined ? {} : { stallMs: options.stallMs }),
      }))
      .register(READ_CHUNK, readChunkHandler({ store: opened, log, onActive, damaged: found }));
    const wire = await listen({ host: options.listen.host, port: options.listen.port, agent: keeperAgent(id) }, (conn) => rpc.serve(conn));
    server = wire;
    if (!advertised) advertised = formatAddress(wire.address);
    else parseAddress(advertised, 'advertised keeper address');

    const zone = options.zone ?? '';
    const buildReport = async (): Promise<HeartbeatReport> => {
      const used = opened.used();
      const space = await health.report(used, opened.reserved());
      return {
        keeperId: id,
        address: advertised,
        zone,
        capacity: space.capacity,
        used,
        chunks: opened.count(),
        load,
        acceptingWrites: space.acceptingWrites,
        ...(space.diskError === '' ? {} : { diskError: space.diskError }),
      };
    };

    const tasks = new TaskRunner({
      store: opened,
      peers,
      damaged: found,
      log,
      onResult: () => wakeHeartbeat(),
      ...(options.taskConcurrency === undefined ? {} : { concurrency: options.taskConcurrency }),
      ...(options.taskQueue === undefined ? {} : { queueLimit: options.taskQueue }),
      ...(options.repairBandwidth === undefined ? {} : { repairBandwidth: options.repairBandwidth }),
      ...(options.stallMs === undefined ? {} : { stallMs: options.stallMs }),
    });
    cancelQueuedDeletes = (chunkId) => void tasks.cancelDeletes(chunkId);
    let reporter: ChunkReporter | null = null;
    let firstReply = true;
    const heartbeat = new HeartbeatLoop({
      master: options.master,
      intervalMs: heartbeatMs,
      report: buildReport,
      log,
      agent: keeperAgent(id),
      ...(options.heartbeatMinGapMs === undefined ? {} : { minGapMs: options.heartbeatMinGapMs }),
      outbox: () => ({ results: tasks.outbox(), corrupt: found.outstanding() }),
      onReply: (reply, delivered) => {
        if (delivered !== null) {
          tasks.acknowledged(delivered.results);
          found.acknowledged(delivered.corrupt);
        }
        tasks.accept(reply.tasks);
        if (firstReply || reply.reportChunks) reporter?.request();
        firstReply = false;
      },
    });
    reporter = new ChunkReporter({
      keeperId: id,
      ids: () => opened.list().map((c) => c.id),
      connection: () => heartbeat.connection,
      log,
      ...(options.chunkReportPage === undefined ? {} : { pageSize: options.chunkReportPage }),
    });
    const chunkReporter = reporter;
    wakeHeartbeat = () => heartbeat.wake();
    const scrubber = options.scrubRate === 0 ? null : new Scrubber({
      store: opened,
      damaged: found,
      busy: () => load > 0,
      log,
      ...(options.scrubRate === undefined ? {} : { rate: options.scrubRate }),
      ...(options.scrubCycleMinMs === undefined ? {} : { cycleMinMs: options.scrubCycleMinMs }),
    });
    heartbeat.start();
    scrubber?.start();
    // Space of deleted small chunks: a pack at least half dead is rewritten, one at a time.
    let compacting: Promise<void> | null = null;
    const compactor = setInterval(() => {
      compacting ??= (async () => {
        try {
          const freed = await opened.compactPacks();
          if (freed > 0) log(`compacted a pack of small chunks: ${freed} bytes of deleted chunks freed, the live ones moved to the newest pack`);
        } catch (err) {
          log(`pack compaction failed: ${(err as Error).message}`);
        } finally {
          compacting = null;
        }
      })();
    }, options.compactEveryMs ?? 30_000);
    compactor.unref();
    log(`keeper ${id} serving ${advertised} from ${opened.dir}, reporting to master ${formatAddress(options.master)}`);

    let closing: Promise<void> | null = null;
    return {
      address: advertised,
      id,
      store: opened,
      get load() {
        return load;
      },
      tasks,
      scrubber,
      get chunkReports() {
        return chunkReporter.completed;
      },
      report: buildReport,
      close() {
        closing ??= (async () => {
          await heartbeat.stop();
          await chunkReporter.stop();
          await scrubber?.stop();
          clearInterval(compactor);
          await compacting;
          await tasks.close();
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
