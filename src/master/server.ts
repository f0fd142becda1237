// The master tracker: serves the namespace and placement over the wire, journals every change
// before acknowledging it, and tracks keeper health from heartbeats.

import { randomFillSync } from 'node:crypto';
import { ensureDir } from '../util/ensure-dir.js';
import { DirLock } from '../util/dir-lock.js';
import { encodeRecord, decodeRecord } from '../wire/fields.js';
import { DfsError } from '../wire/errors.js';
import { RpcServer, readAll } from '../transport/rpc.js';
import { listen, formatAddress, type WireServer } from '../transport/net.js';
import {
  ABORT_UPLOAD, ALLOCATE_CHUNK, BALANCE, BEGIN_UPLOAD, CHUNK_IDS_BODY, CHUNK_REPORT, CHUNKS_BODY, COMMIT, FSCK,
  FSCK_BODY, HEARTBEAT, HEARTBEAT_BODY, KEEPER_ADMIN, KeeperMode, LIST, LIST_BODY, MKDIR, NodeType, REMOVE, RENAME,
  REPORT_CORRUPT, STAT, STATUS, STATUS_BODY, TaskKind, TASKS_BODY, KEEPER_MODE_NAMES, KEEPER_MODE_VALUES, FILE_HEALTH_VALUES,
} from '../protocol/ops.js';
import { RepairScheduler } from './repair.js';
import { GarbageCollector } from './garbage-collector.js';
import { scheduleBalance } from './balancer.js';
import { fsck, type FileReport } from './fsck.js';
import { modeAt, withModes } from './replica-health.js';
import type { KeeperState } from './placement.js';
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
  /** Garbage is deleted from keepers this long after it became garbage. Default 10 min. */
  gcGraceMs?: number;
  /** Uploads idle this long are aborted. Default 30 min. */
  uploadTimeoutMs?: number;
  /** Copies (repair and balancing) a keeper takes part in at once. Default 4. */
  copiesPerKeeper?: number;
  /** Time between automatic balancing rounds; 0 turns the balancer off. Default 60 s. */
  balanceIntervalMs?: number;
  /** Percentage points of fill above the mean that the automatic balancer tolerates. Default 10. */
  balanceThresholdPercent?: number;
  /** Replicas on a keeper silent this long are let go once their chunk has enough others. Default 1 h. */
  forgetDeadAfterMs?: number;
  /** Time between rounds of repair and garbage collection. Default 250 ms. */
  repairTickMs?: number;
}

export interface MasterHandle {
  readonly address: string;
  readonly state: MetadataState;
  /** Keepers whose heartbeats arrive in time. */
  aliveKeepers(): number;
  close(): Promise<void>;
}

const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
/** Tasks handed to a keeper in one heartbeat reply. */
const TASKS_PER_HEARTBEAT = 1024;
/** Largest heartbeat body a master reads: results and corrupt ids of one interval. */
const MAX_HEARTBEAT_BODY = 4 * 1024 * 1024;
/** Largest CHUNK_REPORT page body: 65,536 ids of 32 characters with their field headers. */
const MAX_REPORT_BODY = 4 * 1024 * 1024;
const DEFAULT_MAINTENANCE_MS = 30 * 60_000;
/** Moves scheduled per balancing round; a round runs every 2 s while an operator's balance lasts. */
const BALANCE_MOVES_PER_ROUND = 64;
/** A keeper whose heartbeat connection closed and that has not reported again after this is dead. */
const LOST_CONNECTION_GRACE_MS = 1000;
/** Random ids, drawn from a pool refilled 256 at a time: one call into the random source per 256 ids. */
const idPool = Buffer.alloc(16 * 256);
let idNext = idPool.length;
const newId = (): string => {
  if (idNext === idPool.length) {
    randomFillSync(idPool);
    idNext = 0;
  }
  idNext += 16;
  return idPool.toString('hex', idNext - 16, idNext);
};

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

  const deadAfterMs = options.deadAfterMs ?? 3000;
  const keepers = new KeeperRegistry(deadAfterMs);
  const minReplicas = options.minReplicas ?? DEFAULT_MIN_REPLICAS;
  const defaultReplication = options.defaultReplication ?? 3;
  const startedAt = Date.now();

  /** Applies (validating against the current state), then makes it durable before the caller replies. */
  async function commit<E extends Entry>(entry: E) {
    const result = state.apply(entry);
    repair.afterCommit(entry);
    await store.append(entry);
    return result;
  }

  /**
   * Applies and journals an entry whose reply need not wait for the disk: the steps of an upload
   * before COMMIT. Lost to a crash, they take the upload with them, and its COMMIT then fails with
   * NOT_FOUND; the journal is a sequence, so the COMMIT's own fsync makes them durable first. A
   * failed write breaks the journal, and every later change fails.
   */
  function record<E extends Entry>(entry: E) {
    const result = state.apply(entry);
    repair.afterCommit(entry);
    store.append(entry).catch(() => undefined);
    return result;
  }

  /** Keepers that may take new chunks: alive, accepting writes, and neither draining nor in maintenance. */
  const placementKeepers = (): KeeperState[] => withModes(keepers.placementView(), (id) => state.keeperMode(id), Date.now());

  // After a restart every keeper looks dead until it reports: no repair decisions until they had time to.
  const repair: RepairScheduler = new RepairScheduler({
    state, commit, log, placementView: placementKeepers,
    alive: (id) => keepers.isAlive(id),
    silentForMs: (id) => Date.now() - Math.max(keepers.get(id)?.lastSeen ?? 0, startedAt),
    address: (id) => keepers.address(id),
  }, {
    copiesPerKeeper: options.copiesPerKeeper,
    forgetDeadAfterMs: options.forgetDeadAfterMs,
  }, 2 * deadAfterMs);
  const gc = new GarbageCollector({
    state, tasks: repair.tasks, commit, log, alive: (id) => keepers.isAlive(id),
    isShort: (id) => repair.isShort(id), offerCopy: (id, k) => void repair.offerCopy(id, k),
  }, {
    graceMs: options.gcGraceMs, uploadTimeoutMs: options.uploadTimeoutMs,
  });

  /** A keeper named by its id, a unique prefix of it (4 characters at least), or its address. */
  const findKeeper = (ref: string): string => {
    const all = state.keepers();
    const exact = all.find((k) => k.id === ref || k.address === ref);
    if (exact) return exact.id;
    if (ref.length < 4) throw new DfsError('INVALID_ARGUMENT', `keeper ${ref}: give the whole id, its address, or a prefix of at least 4 characters`);
    const matches = all.filter((k) => k.id.startsWith(ref));
    if (matches.length === 1) return matches[0]!.id;
    if (matches.length > 1) throw new DfsError('INVALID_ARGUMENT', `keeper ${ref} is ambiguous: ${matches.length} keeper ids start with it`);
    throw new DfsError('NOT_FOUND', `keeper ${ref}: no registered keeper has this id or address`);
  };
  // Report keepers that go silent, once, and have their chunks counted at once. Also run before
  // STATUS answers, so that a keeper shown dead is never shown with its chunks still counted healthy.
  const deadSeen = new Set<string>();
  const noticeDeaths = () => {
    for (const k of keepers.all()) {
      if (!k.alive && !deadSeen.has(k.id)) {
        deadSeen.add(k.id);
        log(`keeper ${k.id} at ${k.address} is dead: no heartbeat for ${Date.now() - k.lastSeen} ms`);
        repair.keeperDied(k.id);
      } else if (k.alive) deadSeen.delete(k.id);
    }
  };
  const drained = (id: string) => state.keeperMode(id).mode === 'draining' && state.chunksOnKeeper(id).length === 0;

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
        mtime: e.mtime, chunks: e.chunks, chunkSize: e.chunkSize,
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
  /** Places a new chunk of an open upload and journals it: its id and keepers in pipeline order. */
  function allocate(upload: { uploadId: string; replication: number }, size: number, exclude: readonly string[]) {
    let placed: string[] = [];
    let refusal: unknown = null;
    try {
      placed = placeReplicas({
        keepers: placementKeepers(), replication: upload.replication, chunkSize: size, random: Math.random, exclude,
      });
    } catch (err) {
      refusal = err;
    }
    const needed = Math.min(minReplicas, upload.replication);
    const unheard = state.keepers().filter((k) => !keepers.isAlive(k.id)).length;
    if (placed.length < needed && unheard > 0 && Date.now() < startedAt + 2 * deadAfterMs) {
      // Just started: keepers registered in the journal have not all reported yet. Worth a retry.
      throw new DfsError('UNAVAILABLE',
        `the master started ${Date.now() - startedAt} ms ago and its keepers are still reporting in ` +
        `(${keepers.all().filter((k) => k.alive).length} of ${state.keepers().length} so far); retry in a moment`);
    }
    if (refusal !== null) throw refusal;
    if (placed.length < needed) {
      const alive = keepers.all().filter((k) => k.alive).length;
      throw new DfsError('NOT_ENOUGH_KEEPERS',
        `only ${placed.length} keeper(s) can take a ${size}-byte chunk (${alive} alive); at least ${needed} replicas are required`);
    }
    const chunkId = newId();
    // Registered keepers only: the state machine refuses replicas on unknown keepers.
    record({ type: 'allocate-chunks', uploadId: upload.uploadId, chunks: [{ id: chunkId, replicas: placed }], mtime: Date.now() });
    return { chunkId, keepers: placed.map((id) => ({ id, address: keepers.address(id)! })) };
  }

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
      record({ type: 'mkdir', path: parent, parents: true, mtime: Date.now() });
    }
    record({ type: 'begin-upload', uploadId, path, replication, chunkSize, mtime: Date.now() });
    const response = { uploadId, minReplicas: Math.min(minReplicas, replication) };
    if (request.firstChunk === undefined) return { response };
    // If the first chunk cannot be placed now, the writer asks ALLOCATE_CHUNK, which says why or
    // waits for keepers to report in.
    try {
      return { response: { ...response, ...allocate({ uploadId, replication }, request.firstChunk, []) } };
    } catch (err) {
      if (!(err instanceof DfsError)) throw err;
      return { response };
    }
  });
  rpc.register(ALLOCATE_CHUNK, async ({ request }) => {
    const upload = state.upload(request.uploadId);
    if (!upload) throw new DfsError('NOT_FOUND', `upload ${request.uploadId} is not open (aborted, committed or never begun)`);
    return { response: await allocate(upload, request.size, request.exclude ?? []) };
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
    noticeDeaths();
    const stats = state.stats();
    const modeOf = (id: string) => modeAt(state.keeperMode(id), Date.now());
    const body = encodeRecord(STATUS_BODY, {
      keepers: keepers.all().map((k) => ({
        id: k.id, address: k.address, zone: k.zone, alive: k.alive, capacity: k.capacity, used: k.used, chunks: k.chunks,
        load: k.load, lastSeenMs: Math.max(0, Date.now() - k.lastSeen),
        mode: KEEPER_MODE_VALUES[modeOf(k.id).mode], modeUntil: modeOf(k.id).until, acceptingWrites: k.acceptingWrites,
        diskError: k.diskError, drained: drained(k.id),
      })),
    });
    const r = repair.status();
    return {
      response: {
        files: stats.files, chunks: stats.chunks, underReplicated: r.underReplicated, missing: r.missing,
        repairsInFlight: r.repairsInFlight, repaired: r.repaired, repairBytesPerS: r.repairBytesPerS, garbage: stats.garbage,
      },
      body,
    };
  });
  /** The connection each keeper last heartbeated on: its closing is an early sign of death. */
  const heartbeatConns = new WeakSet<object>();
  rpc.register(HEARTBEAT, async ({ request, body, connection }) => {
    const raw = await readAll(body, MAX_HEARTBEAT_BODY);
    const report = raw.length === 0 ? { results: [], corrupt: [] } : decodeRecord(HEARTBEAT_BODY, raw);
    const id = request.keeperId;
    const known = state.keeper(id);
    if (!known || known.address !== request.address || known.zone !== request.zone || known.capacity !== request.capacity) {
      await commit({ type: 'register-keeper', id, address: request.address, zone: request.zone, capacity: request.capacity });
    }
    const wasAlive = keepers.isAlive(id);
    keepers.report({
      id, address: request.address, zone: request.zone, capacity: request.capacity, used: request.used,
      chunks: request.chunks, load: request.load, acceptingWrites: request.acceptingWrites, diskError: request.diskError ?? '',
    });
    if (!heartbeatConns.has(connection)) {
      heartbeatConns.add(connection);
      connection.once('close', () => keepers.connectionLost(id, Math.min(LOST_CONNECTION_GRACE_MS, deadAfterMs)));
    }
    if (!wasAlive) {
      log(`keeper ${id} at ${request.address} is alive`);
      repair.keeperRestarted(id);
      repair.keeperChanged(id);
    }
    await repair.onCorruptReport(id, report.corrupt);
    for (const r of report.results) {
      const task = repair.tasks.complete(id, r.taskId);
      if (task === undefined) continue;
      if (task.kind === TaskKind.DELETE) gc.onResult(task, r.status);
      else await repair.onResult(task, r);
    }
    if (report.results.length > 0 || report.corrupt.length > 0) repair.planCopies();
    const tasks = repair.tasks.takeFor(id, TASKS_PER_HEARTBEAT);
    const reply = { intervalMs: options.heartbeatMs ?? 1000, reportChunks: repair.wantsReport(id) };
    if (tasks.length === 0) return { response: reply };
    return {
      response: reply,
      body: encodeRecord(TASKS_BODY, {
        tasks: tasks.map((t) => ({ taskId: t.taskId, kind: t.kind, chunkId: t.chunkId, targetId: t.targetId, targetAddress: t.targetAddress })),
      }),
    };
  });
  const reportConns = new Map<string, object>();
  rpc.register(CHUNK_REPORT, async ({ request, body, connection }) => {
    if (state.keeper(request.keeperId) === undefined) {
      throw new DfsError('NOT_FOUND', `chunk report from keeper ${request.keeperId}, which has not registered by heartbeat yet`);
    }
    const { ids } = decodeRecord(CHUNK_IDS_BODY, await readAll(body, MAX_REPORT_BODY));
    // A report's pages travel on one connection; pages from another are a report started afresh.
    if (reportConns.get(request.keeperId) !== connection) {
      reportConns.set(request.keeperId, connection);
      repair.discardPartialReport(request.keeperId);
    }
    await repair.onChunkReport(request.keeperId, ids, request.final);
    return { response: {} };
  });
  rpc.register(REPORT_CORRUPT, ({ request }) => {
    log(`a reader reports chunk ${request.chunkId} from keeper ${request.keeperId} as bad${request.message ? `: ${request.message}` : ''}; asking the keeper to verify it`);
    repair.onReadCorruption(request.chunkId, request.keeperId);
    return { response: {} };
  });
  rpc.register(KEEPER_ADMIN, async ({ request }) => {
    const id = findKeeper(request.keeperId);
    if (request.mode === KeeperMode.FORGET) {
      if (keepers.isAlive(id)) throw new DfsError('INVALID_ARGUMENT', `keeper ${id} is alive: stop it (after draining it) before forgetting it`);
      await commit({ type: 'forget-keeper', id });
      keepers.remove(id);
      log(`keeper ${id}: forgotten`);
      return { response: { mode: request.mode, until: 0, drained: true, keeperId: id } };
    }
    const mode = KEEPER_MODE_NAMES[request.mode];
    if (mode === undefined) throw new DfsError('INVALID_ARGUMENT', `keeper mode ${request.mode} is not 1 (normal), 2 (maintenance), 3 (draining) or 4 (forget)`);
    const until = mode === 'maintenance' ? Date.now() + (request.durationMs || DEFAULT_MAINTENANCE_MS) : 0;
    await commit({ type: 'keeper-mode', id, mode, until });
    log(`keeper ${id}: mode ${mode}${until ? ` until ${new Date(until).toISOString()}` : ''}`);
    return { response: { mode: request.mode, until, drained: drained(id), keeperId: id } };
  });
  rpc.register(FSCK, ({ request }) => {
    const path = normalisePath(request.path);
    const files: FileReport[] = [];
    const sum = fsck(state, repair.judge, path, (r) => { if (request.all || r.health !== 'healthy') files.push(r); });
    const body = encodeRecord(FSCK_BODY, {
      files: files.map((f) => ({
        path: f.path, health: FILE_HEALTH_VALUES[f.health], chunks: f.chunks, underReplicated: f.underReplicated, corrupt: f.corrupt, missing: f.missing,
      })),
    });
    return { response: sum, body };
  });
  const balanceRound = (thresholdPercent: number, maxMoves: number) => scheduleBalance({
    state, repair, keepers: placementKeepers().filter((k) => k.alive && k.acceptingWrites), thresholdPercent, maxMoves,
  });
  /** A balancing run an operator asked for: it goes on, round after round, until nothing is left to move. */
  let balancing: { thresholdPercent: number; moves: number } | null = null;
  rpc.register(BALANCE, ({ request }) => {
    if (request.thresholdPercent > 100) {
      throw new DfsError('INVALID_ARGUMENT', `balance threshold must be a percentage from 0 to 100, got ${request.thresholdPercent}`);
    }
    const moves = balanceRound(request.thresholdPercent, BALANCE_MOVES_PER_ROUND);
    balancing = { thresholdPercent: request.thresholdPercent, moves };
    log(`balance: ${moves} move(s) scheduled (threshold ${request.thresholdPercent}%); more follow as these finish`);
    return { response: { moves } };
  });

  const server: WireServer = await listen({ host: options.host, port: options.port, agent: 'dfs-master/0.1' }, (conn) => rpc.serve(conn));
  const address = formatAddress(server.address);
  log(`master listening on ${address}, metadata in ${options.dataDir}`);

  const watcher = setInterval(noticeDeaths, 100);
  watcher.unref();

  // Repair, garbage collection and balancing run in rounds; a failed round is logged and retried.
  let lastBalance = Date.now();
  const balanceEvery = options.balanceIntervalMs ?? 60_000;
  let rounds: Promise<void> = Promise.resolve();
  let round = 0;
  const caretaker = setInterval(() => {
    rounds = (async () => {
      await repair.tick();
      // Garbage walks every record: four times less often than repair, which works from events.
      if (round++ % 4 === 0) await gc.tick();
      if (balancing !== null && round % 8 === 0) {
        const moves = balanceRound(balancing.thresholdPercent, BALANCE_MOVES_PER_ROUND);
        balancing.moves += moves;
        if (moves === 0 && repair.status().repairsInFlight === 0) {
          log(`balance: done, ${balancing.moves} replica(s) moved`);
          balancing = null;
        }
      } else if (balanceEvery > 0 && Date.now() - lastBalance >= balanceEvery) {
        lastBalance = Date.now();
        if (repair.status().underReplicated === 0) {
          const moves = balanceRound(options.balanceThresholdPercent ?? 10, BALANCE_MOVES_PER_ROUND);
          if (moves > 0) log(`balancer: ${moves} move(s) scheduled`);
        }
      }
    })().catch((err: Error) => log(`repair round failed: ${err.message}`));
  }, options.repairTickMs ?? 250);
  caretaker.unref();

  return {
    address,
    state,
    aliveKeepers: () => keepers.all().filter((k) => k.alive).length,
    async close() {
      clearInterval(watcher);
      clearInterval(caretaker);
      await rounds;
      await server.close();
      await store.close();
      await lock.release();
    },
  };
}
