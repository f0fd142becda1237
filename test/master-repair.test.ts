// The master's self-healing logic against a state machine and a simulated clock: which copies it asks
// for, in what order, what a result changes, trimming, chunk-report reconciliation and garbage
// collection. The keepers are simulated by answering tasks; the e2e tests run the real thing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MetadataState } from '../src/master/namespace.js';
import { RepairScheduler } from '../src/master/repair.js';
import { GarbageCollector } from '../src/master/garbage-collector.js';
import { scheduleBalance } from '../src/master/balancer.js';
import { fsck, type FileReport } from '../src/master/fsck.js';
import { withModes } from '../src/master/replica-health.js';
import type { Entry } from '../src/master/entries.js';
import type { KeeperState } from '../src/master/placement.js';
import { TaskKind } from '../src/protocol/ops.js';
import type { Task } from '../src/master/tasks.js';

const newId = () => randomBytes(16).toString('hex');
const sha = (id: string) => (id + id).slice(0, 64);

interface Sim {
  state: MetadataState;
  repair: RepairScheduler;
  gc: GarbageCollector;
  alive: Set<string>;
  used: Map<string, number>;
  clock: { t: number };
  journal: Entry[];
  files: Map<string, string[]>;
  commit(e: Entry): Promise<unknown>;
  put(path: string, chunks: number, replicas?: string[], replication?: number): string[];
  /** Hands out the tasks of every live keeper and answers them with `answer`. */
  run(answer?: (t: Task) => string): Promise<Task[]>;
}

function sim(keepers = ['k1', 'k2', 'k3', 'k4'], options: { graceMs?: number } = {}): Sim {
  const state = new MetadataState();
  keepers.forEach((id, i) => state.apply({ type: 'register-keeper', id, address: `10.0.0.${i + 1}:7000`, zone: `z${i}`, capacity: 1 << 30 }));
  const alive = new Set(keepers);
  const used = new Map(keepers.map((k) => [k, 0]));
  const clock = { t: 1_000_000 };
  const journal: Entry[] = [];
  const commit = async (e: Entry) => {
    const r = state.apply(e);
    journal.push(e);
    repair.afterCommit(e);
    return r;
  };
  const view = (): KeeperState[] => withModes(state.keepers().map((k) => ({
    id: k.id, zone: k.zone, capacity: k.capacity, used: used.get(k.id) ?? 0, load: 0, alive: alive.has(k.id), acceptingWrites: true,
  })), (id) => state.keeperMode(id), clock.t);
  const repair: RepairScheduler = new RepairScheduler({
    state, commit, log: () => {}, now: () => clock.t, placementView: view,
    alive: (k) => alive.has(k), silentForMs: (k) => (alive.has(k) ? 0 : 10_000), address: (k) => state.keeper(k)?.address,
  }, { copiesPerKeeper: 2, forgetDeadAfterMs: 3_600_000 });
  const gc = new GarbageCollector({
    state, tasks: repair.tasks, commit, alive: (k) => alive.has(k), log: () => {}, now: () => clock.t,
    isShort: (id) => repair.isShort(id), offerCopy: (id, k) => void repair.offerCopy(id, k),
  },
    { graceMs: options.graceMs ?? 60_000 });
  const files = new Map<string, string[]>();
  const s: Sim = {
    state, repair, gc, alive, used, clock, journal, files, commit,
    put(path, chunks, replicas = keepers.slice(0, 3), replication = 3) {
      const uploadId = newId();
      const ids = Array.from({ length: chunks }, newId);
      state.apply({ type: 'begin-upload', uploadId, path, replication, chunkSize: 100, mtime: clock.t });
      state.apply({ type: 'allocate-chunks', uploadId, chunks: ids.map((id) => ({ id, replicas })), mtime: clock.t });
      const entry: Entry = { type: 'commit-file', uploadId, path, size: chunks * 100, mtime: clock.t,
        chunks: ids.map((id) => ({ id, size: 100, sha256: sha(id), replicas })) };
      state.apply(entry);
      repair.afterCommit(entry);
      files.set(path, ids);
      return ids;
    },
    async run(answer = () => 'NO_ERROR') {
      const handed: Task[] = [];
      for (const k of alive) {
        const tasks = repair.tasks.takeFor(k, 1000);
        handed.push(...tasks);
        for (const t of tasks) {
          const done = repair.tasks.complete(k, t.taskId)!;
          const status = answer(t);
          if (t.kind === TaskKind.DELETE) gc.onResult(done, status);
          else await repair.onResult(done, { taskId: t.taskId, status });
        }
      }
      return handed;
    },
  };
  return s;
}

test('a dead keeper\'s chunks are copied from live replicas to a keeper without one, and recorded once copied', async () => {
  const s = sim();
  const ids = s.put('/f', 3);
  await s.repair.tick();
  assert.equal(s.repair.status().underReplicated, 0, 'a healthy cluster needs nothing');
  s.alive.delete('k1');
  s.repair.keeperDied('k1');
  await s.repair.tick();
  assert.equal(s.repair.status().underReplicated, 3);
  // Per-keeper slots: k4 takes part in at most 2 copies at once.
  const first = await s.run();
  assert.equal(first.length, 2);
  for (const t of first) {
    assert.equal(t.kind, TaskKind.COPY);
    assert.equal(t.targetId, 'k4');
    assert.ok(['k2', 'k3'].includes(t.keeperId), `source ${t.keeperId} must hold a live replica`);
  }
  await s.repair.tick();
  await s.run();
  await s.repair.tick();
  assert.equal(s.repair.status().underReplicated, 0);
  assert.equal(s.repair.status().repaired, 3);
  for (const id of ids) {
    const replicas = s.state.chunkOwner(id)!.chunk.replicas;
    assert.ok(replicas.includes('k4'));
    // The dead keeper's replica stays listed (it may come back) but no longer counts.
    assert.ok(replicas.includes('k1'));
  }
});

test('chunks with one live replica are copied before chunks with two', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4', 'k5', 'k6']);
  const two = s.put('/two', 4, ['k1', 'k2', 'k3']);
  const one = s.put('/one', 1, ['k1', 'k4', 'k5']);
  s.alive.delete('k4');
  s.alive.delete('k5');
  s.alive.delete('k3');
  s.repair.keeperDied('k3');
  s.repair.keeperDied('k4');
  s.repair.keeperDied('k5');
  await s.repair.tick();
  const tasks = s.repair.tasks.takeFor('k1', 10).concat(s.repair.tasks.takeFor('k2', 10));
  assert.ok(tasks.length > 0);
  assert.equal(tasks[0]!.chunkId, one[0], 'the chunk one failure from loss goes first');
  assert.ok(two.includes(tasks[tasks.length - 1]!.chunkId));
});

test('a failed copy is retried with another target; a copy of a file deleted meanwhile becomes garbage', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4', 'k5']);
  const [id] = s.put('/f', 1);
  s.alive.delete('k3');
  s.repair.keeperDied('k3');
  await s.repair.tick();
  const [t1] = await s.run(() => 'IO_ERROR');
  await s.repair.tick();
  const [t2] = await s.run(() => 'NO_ERROR');
  assert.notEqual(t2!.targetId, t1!.targetId, 'the failed target is avoided');
  assert.ok(s.state.chunkOwner(id!)!.chunk.replicas.includes(t2!.targetId!));

  const [gone] = s.put('/g', 1);
  s.alive.delete('k2');
  s.repair.keeperDied('k2');
  await s.repair.tick();
  const copy = s.repair.tasks.takeFor('k1', 10).find((t) => t.chunkId === gone);
  assert.ok(copy);
  s.state.apply({ type: 'remove', path: '/g', recursive: false, mtime: s.clock.t });
  await s.repair.onResult(s.repair.tasks.complete('k1', copy.taskId)!, { taskId: copy.taskId, status: 'NO_ERROR' });
  assert.ok(s.state.garbageOf(gone!)?.keepers.includes(copy.targetId!), 'the orphan copy is collected later');
});

test('a keeper that comes back after repair makes chunks over-replicated: the fullest replica is trimmed', async () => {
  const s = sim();
  const [id] = s.put('/f', 1);
  s.alive.delete('k1');
  s.repair.keeperDied('k1');
  await s.repair.tick();
  await s.run();
  await s.repair.tick();
  s.alive.add('k1');
  s.used.set('k1', 900 << 20);
  s.repair.keeperChanged('k1');
  await s.repair.tick();
  const replicas = s.state.chunkOwner(id!)!.chunk.replicas;
  assert.equal(replicas.length, 3);
  assert.ok(!replicas.includes('k1'), 'the fullest keeper gives its copy up');
  assert.deepEqual(s.state.garbageOf(id!)?.keepers, ['k1']);
});

test('a keeper in maintenance is not repaired around; a draining one is copied off, then released', async () => {
  const s = sim();
  const ids = s.put('/f', 2);
  s.state.apply({ type: 'keeper-mode', id: 'k1', mode: 'maintenance', until: s.clock.t + 60_000 });
  s.alive.delete('k1');
  s.repair.keeperDied('k1');
  await s.repair.tick();
  assert.equal(s.repair.status().underReplicated, 0);
  assert.equal((await s.run()).length, 0, 'no repair storm for a planned restart');
  // The window ends with the keeper still away: now it is repaired around.
  s.clock.t += 61_000;
  await s.repair.tick();
  assert.equal(s.repair.status().underReplicated, 2, 'noticed without any event: the window simply ran out');
  assert.deepEqual((await s.run()).map((t) => t.targetId), ['k4', 'k4']);
  // Back after all: one copy too many per chunk, and the extra goes.
  s.alive.add('k1');
  await s.commit({ type: 'keeper-mode', id: 'k1', mode: 'normal', until: 0 });
  await s.repair.tick();
  for (const id of ids) assert.equal(s.state.chunkOwner(id)!.chunk.replicas.length, 3);
  assert.equal((await s.run()).length, 0);

  await s.commit({ type: 'keeper-mode', id: 'k2', mode: 'draining', until: 0 });
  for (let i = 0; i < 4; i++) {
    await s.repair.tick();
    // Never below the factor on the way: every chunk keeps 3 counting or draining replicas.
    for (const id of ids) assert.ok(s.state.chunkOwner(id)!.chunk.replicas.length >= 3);
    await s.run();
  }
  await s.repair.tick();
  assert.deepEqual(s.state.chunksOnKeeper('k2'), [], 'drained');
  for (const id of ids) assert.equal(s.state.chunkOwner(id)!.chunk.replicas.length, 3);
});

test('chunk reports: a lost replica is dropped, an unknown chunk becomes garbage, a useful extra copy is adopted', async () => {
  const s = sim();
  const [a, b] = s.put('/f', 2);
  s.clock.t += 120_000; // the commit is older than any report race
  const stray = newId();
  const [c] = s.put('/g', 1, ['k1', 'k2']);
  s.clock.t += 120_000;
  assert.equal(s.repair.wantsReport('k3'), true);
  await s.repair.onChunkReport('k3', [b!], false);
  assert.equal(s.repair.wantsReport('k3'), false, 'a report in progress is not asked for again');
  await s.repair.onChunkReport('k3', [stray, c!], true);
  assert.equal(s.repair.wantsReport('k3'), false);
  assert.ok(!s.state.chunkOwner(a!)!.chunk.replicas.includes('k3'), 'k3 lost chunk a');
  assert.deepEqual(s.state.garbageOf(stray)?.keepers, ['k3']);
  assert.ok(!s.state.chunkOwner(c!)!.chunk.replicas.includes('k3'), 'a reported copy is not adopted unverified');
  const verify = s.repair.tasks.takeFor('k3', 10).find((t) => t.chunkId === c);
  assert.equal(verify?.kind, TaskKind.VERIFY);
  await s.repair.onResult(s.repair.tasks.complete('k3', verify.taskId)!, { taskId: verify.taskId, status: 'NO_ERROR' });
  assert.ok(s.state.chunkOwner(c!)!.chunk.replicas.includes('k3'), 'k3 holds a verified copy of c, which lacked one');
  s.repair.keeperRestarted('k3');
  assert.equal(s.repair.wantsReport('k3'), true, 'a keeper back from silence reports again');
});

test('a chunk missing from a report right after it was added is verified, not dropped', async () => {
  const s = sim();
  const [a] = s.put('/f', 1);
  await s.repair.onChunkReport('k2', [], true);
  assert.ok(s.state.chunkOwner(a!)!.chunk.replicas.includes('k2'));
  const [verify] = await s.run((t) => (t.kind === TaskKind.VERIFY ? 'NOT_FOUND' : 'NO_ERROR'));
  assert.equal(verify?.kind, TaskKind.VERIFY);
  assert.ok(!s.state.chunkOwner(a!)!.chunk.replicas.includes('k2'), 'dropped once the keeper confirms it is gone');
});

test('corruption: a keeper\'s report drops the replica and triggers repair; a reader\'s report only asks for a check', async () => {
  const s = sim();
  const [a] = s.put('/f', 1);
  s.repair.onReadCorruption(a!, 'k1');
  assert.ok(s.state.chunkOwner(a!)!.chunk.replicas.includes('k1'), 'a reader alone never removes a replica');
  const [verify] = s.repair.tasks.takeFor('k1', 10);
  assert.equal(verify?.kind, TaskKind.VERIFY);
  await s.repair.onCorruptReport('k1', [a!]);
  assert.ok(!s.state.chunkOwner(a!)!.chunk.replicas.includes('k1'));
  await s.repair.tick();
  const [copy] = await s.run();
  assert.equal(copy?.targetId, 'k4');
  const reports: FileReport[] = [];
  const sum = fsck(s.state, s.repair.judge, '/', (r) => reports.push(r));
  assert.deepEqual(sum, { files: 1, healthy: 1, underReplicated: 0, corrupt: 0, missing: 0 });
});

test('fsck tells healthy, under-replicated, corrupt and missing files apart', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4', 'k5', 'k6']);
  s.put('/ok', 1, ['k1', 'k2', 'k3']);
  s.state.apply({ type: 'mkdir', path: '/d', parents: false, mtime: s.clock.t });
  s.put('/d/under', 2, ['k1', 'k2', 'k4']);
  const [bad] = s.put('/d/bad', 1, ['k5'], 1);
  s.put('/d/lost', 1, ['k6'], 1);
  s.alive.delete('k4');
  s.alive.delete('k6');
  await s.repair.onCorruptReport('k5', [bad!]);
  const reports: FileReport[] = [];
  const sum = fsck(s.state, s.repair.judge, '/', (r) => reports.push(r));
  assert.deepEqual(sum, { files: 4, healthy: 1, underReplicated: 1, corrupt: 1, missing: 1 });
  const by = new Map(reports.map((r) => [r.path, r]));
  assert.equal(by.get('/d/under')?.underReplicated, 2);
  assert.equal(by.get('/d/bad')?.health, 'corrupt');
  assert.equal(by.get('/d/lost')?.health, 'missing');
  const sub = fsck(s.state, s.repair.judge, '/ok', () => {});
  assert.equal(sub.files, 1);
});

test('garbage is deleted only after the grace period, never while a file uses the copy, and forgotten once confirmed', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4'], { graceMs: 60_000 });
  const [old] = s.put('/f', 1);
  s.put('/f', 1); // overwrite: the old chunk is garbage on k1..k3
  assert.deepEqual([...s.state.garbageOf(old!)!.keepers].sort(), ['k1', 'k2', 'k3']);
  await s.gc.tick();
  assert.equal((await s.run()).length, 0, 'inside the grace period nothing is deleted');
  s.clock.t += 61_000;
  s.alive.delete('k3');
  await s.gc.tick();
  const deletes = await s.run();
  assert.deepEqual(deletes.map((t) => t.keeperId).sort(), ['k1', 'k2'], 'dead keepers are asked later');
  await s.gc.tick();
  assert.deepEqual(s.state.garbageOf(old!)?.keepers, ['k3'], 'confirmed deletions are forgotten');
  // A garbage record naming a keeper that a committed file uses there is released, never deleted.
  const [live] = s.put('/g', 1);
  s.state.apply({ type: 'mark-garbage', chunks: [{ id: live!, keepers: ['k4'] }], mtime: s.clock.t });
  s.state.apply({ type: 'update-replicas', chunkId: live!, add: ['k4'], remove: [], mtime: s.clock.t });
  s.clock.t += 61_000;
  await s.gc.tick();
  assert.ok(!(await s.run()).some((t) => t.chunkId === live), 'a chunk a file uses is never deleted');
});

test('an upload idle past the timeout is aborted and its chunks become garbage', async () => {
  const s = sim();
  const uploadId = newId();
  const chunk = newId();
  s.state.apply({ type: 'begin-upload', uploadId, path: '/slow', replication: 3, chunkSize: 100, mtime: s.clock.t });
  s.state.apply({ type: 'allocate-chunks', uploadId, chunks: [{ id: chunk, replicas: ['k1', 'k2'] }], mtime: s.clock.t });
  await s.gc.tick();
  assert.ok(s.state.upload(uploadId));
  s.clock.t += 31 * 60_000;
  await s.gc.tick();
  assert.equal(s.state.upload(uploadId), undefined);
  assert.deepEqual(s.state.garbageOf(chunk)?.keepers, ['k1', 'k2']);
});

test('balancing moves replicas from the fullest keeper to the emptiest, copying before dropping', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4']);
  const ids = s.put('/f', 4, ['k1', 'k2', 'k3']);
  s.used.set('k1', 600 << 20);
  s.used.set('k2', 300 << 20);
  s.used.set('k3', 300 << 20);
  const view = s.state.keepers().map((k) => ({ id: k.id, zone: k.zone, capacity: k.capacity, used: s.used.get(k.id)!, load: 0, alive: true, acceptingWrites: true }));
  const moves = scheduleBalance({ state: s.state, repair: s.repair, keepers: view, thresholdPercent: 10, maxMoves: 10 });
  assert.equal(moves, 2, 'bounded by the copy slots');
  const tasks = s.repair.tasks.takeFor('k1', 10);
  assert.ok(tasks.every((t) => t.keeperId === 'k1' && t.targetId === 'k4'));
  for (const t of tasks) assert.ok(s.state.chunkOwner(t.chunkId)!.chunk.replicas.includes('k1'), 'the source keeps its copy until the move is done');
  for (const t of tasks) await s.repair.onResult(s.repair.tasks.complete('k1', t.taskId)!, { taskId: t.taskId, status: 'NO_ERROR' });
  const moved = ids.filter((id) => s.state.chunkOwner(id)!.chunk.replicas.includes('k4'));
  assert.equal(moved.length, 2);
  for (const id of moved) assert.ok(!s.state.chunkOwner(id)!.chunk.replicas.includes('k1'));
});

test('a keeper full of chunks the master never heard of is not collected: the metadata may be the wrong one', async () => {
  const s = sim();
  s.put('/f', 1);
  const strangers = Array.from({ length: 100 }, newId);
  await s.repair.onChunkReport('k4', strangers, true);
  for (const id of strangers) assert.equal(s.state.garbageOf(id), undefined);
  const few = Array.from({ length: 3 }, newId);
  await s.repair.onChunkReport('k3', [...few, ...s.files.get('/f')!], true);
  for (const id of few) assert.deepEqual(s.state.garbageOf(id)?.keepers, ['k3'], 'a handful of strays is ordinary garbage');
});

test('two of three replicas found corrupt one after the other, with a copy from the second in flight: repaired from the third', async () => {
  const s = sim();
  const [id] = s.put('/f', 1);
  await s.repair.onCorruptReport('k1', [id!]);
  await s.repair.tick();
  const [copy] = s.repair.tasks.takeFor('k2', 10).concat(s.repair.tasks.takeFor('k3', 10));
  assert.ok(copy);
  await s.repair.onCorruptReport(copy.keeperId, [id!]);
  await s.repair.onResult(s.repair.tasks.complete(copy.keeperId, copy.taskId)!, { taskId: copy.taskId, status: 'NOT_FOUND' });
  for (let i = 0; i < 4; i++) {
    await s.repair.tick();
    await s.run();
  }
  await s.repair.tick();
  assert.equal(s.repair.status().underReplicated, 0, JSON.stringify(s.state.chunkOwner(id!)!.chunk.replicas));
  assert.equal(s.state.chunkOwner(id!)!.chunk.replicas.length, 3);
});

test('a copy never races a deletion of the same chunk on the same keeper', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4'], { graceMs: 1000 });
  const [id] = s.put('/f', 1);
  // k4 once held a trimmed copy: garbage there. A deletion is pending when k1 dies.
  s.state.apply({ type: 'mark-garbage', chunks: [{ id: id!, keepers: ['k4'] }], mtime: s.clock.t });
  s.clock.t += 2000;
  await s.gc.tick();
  assert.ok(s.repair.tasks.has(TaskKind.DELETE, id!, 'k4'));
  s.alive.delete('k1');
  s.repair.keeperDied('k1');
  await s.repair.tick();
  assert.equal(s.repair.status().repairsInFlight, 0, 'no copy to k4 while its deletion is pending');
  await s.run(); // k4 confirms the deletion
  await s.repair.tick();
  const copies = await s.run();
  assert.equal(copies.find((t) => t.kind === TaskKind.COPY)?.targetId, 'k4');
  // ...and the other way round: no deletion on a keeper a copy is headed for.
  const [other] = s.put('/g', 1, ['k2', 'k3', 'k4']);
  s.alive.delete('k2');
  s.repair.keeperDied('k2');
  s.alive.add('k1');
  await s.repair.tick();
  const copy = [...s.repair.tasks.takeFor('k3', 10), ...s.repair.tasks.takeFor('k4', 10)].find((t) => t.chunkId === other);
  assert.equal(copy?.targetId, 'k1');
  s.state.apply({ type: 'mark-garbage', chunks: [{ id: other!, keepers: ['k1'] }], mtime: 0 });
  await s.gc.tick();
  assert.equal(s.repair.tasks.has(TaskKind.DELETE, other!, 'k1'), false);
});

test('a maintenance window that runs out with the keeper up makes it normal again: it takes copies and new chunks', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4']);
  s.state.apply({ type: 'keeper-mode', id: 'k4', mode: 'maintenance', until: s.clock.t + 5000 });
  const [id] = s.put('/f', 1);
  s.alive.delete('k1');
  s.repair.keeperDied('k1');
  await s.repair.tick();
  assert.equal((await s.run()).length, 0, 'k4 in maintenance takes no copies');
  s.clock.t += 6000;
  await s.repair.tick();
  const [copy] = await s.run();
  assert.equal(copy?.targetId, 'k4', 'the window is over: k4 is a target again');
  assert.ok(s.state.chunkOwner(id!)!.chunk.replicas.includes('k4'));
  assert.equal(s.repair.judge.mode('k4').mode, 'normal');
});

test('trims after a keeper returns spread over the holders instead of emptying one of them', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4']);
  const ids = s.put('/f', 40, ['k1', 'k2', 'k3']);
  // Copies made to k4 while k1 was away; k1 is back, so every chunk has one replica too many.
  for (const id of ids) await s.commit({ type: 'update-replicas', chunkId: id, add: ['k4'], remove: [], mtime: s.clock.t });
  await s.repair.tick();
  const kept = new Map<string, number>();
  for (const id of ids) {
    const replicas = s.state.chunkOwner(id)!.chunk.replicas;
    assert.equal(replicas.length, 3);
    for (const k of replicas) kept.set(k, (kept.get(k) ?? 0) + 1);
  }
  for (const k of ['k1', 'k2', 'k3', 'k4']) assert.ok((kept.get(k) ?? 0) >= 20, `${k} keeps ${kept.get(k)} of 40`);
});

test('balancing fills a keeper far below the mean even when none is far above it', () => {
  const s = sim(['k1', 'k2', 'k3', 'k4']);
  s.put('/f', 8, ['k1', 'k2', 'k3']);
  for (const k of ['k1', 'k2', 'k3']) s.used.set(k, 130 << 20); // about 12.7% each; k4 empty, mean 9.5%
  const view = s.state.keepers().map((k) => ({ id: k.id, zone: k.zone, capacity: k.capacity, used: s.used.get(k.id)!, load: 0, alive: true, acceptingWrites: true }));
  const moves = scheduleBalance({ state: s.state, repair: s.repair, keepers: view, thresholdPercent: 5, maxMoves: 10 });
  assert.ok(moves > 0);
  assert.ok(s.repair.tasks.takeFor('k1', 10).concat(s.repair.tasks.takeFor('k2', 10), s.repair.tasks.takeFor('k3', 10)).every((t) => t.targetId === 'k4'));
});

test('the collector never deletes the last good copy of a chunk that is short of replicas: it is verified and adopted', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4'], { graceMs: 600_000 });
  const [x] = s.put('/f', 1, ['k1', 'k3'], 2);
  assert.ok(s.repair.requestMove(x!, 'k3', 'k2'));
  await s.run();
  assert.deepEqual(s.state.garbageOf(x!)?.keepers, ['k3']);
  for (const k of ['k1', 'k2']) { s.alive.delete(k); s.repair.keeperDied(k); }
  await s.repair.tick();
  assert.equal(s.repair.status().missing, 1);
  s.clock.t += 600_001;
  await s.gc.tick();
  const handed = await s.run();
  assert.ok(!handed.some((t) => t.kind === TaskKind.DELETE), 'no DELETE of the last good copy');
  assert.ok(handed.some((t) => t.kind === TaskKind.VERIFY && t.keeperId === 'k3'), 'the copy is verified instead');
  assert.ok(s.state.chunkOwner(x!)!.chunk.replicas.includes('k3'), 'and adopted');
  assert.equal(s.state.garbageOf(x!), undefined);
});

test('a copy deleted while a multi-page chunk report was in flight is not adopted', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4'], { graceMs: 1000 });
  const [x] = s.put('/f', 1, ['k1', 'k2', 'k3'], 3);
  s.clock.t += 120_000;
  await s.commit({ type: 'mark-garbage', chunks: [{ id: x!, keepers: ['k4'] }], mtime: s.clock.t });
  s.clock.t += 2000;
  await s.gc.tick();
  const [del] = s.repair.tasks.takeFor('k4', 10);
  await s.repair.onChunkReport('k4', [x!], false); // listed before the deletion
  s.gc.onResult(s.repair.tasks.complete('k4', del!.taskId)!, 'NO_ERROR');
  s.alive.delete('k1');
  s.repair.keeperDied('k1');
  await s.repair.onChunkReport('k4', [], true);
  // The keeper answers the verification truthfully: it no longer has the chunk.
  await s.run((t) => (t.kind === TaskKind.VERIFY ? 'NOT_FOUND' : 'NO_ERROR'));
  assert.equal(s.state.chunkOwner(x!)!.chunk.replicas.includes('k4'), false, 'no phantom replica');
});

test('deletions sent to a keeper declared dead stay on the books: no copy to it, no adoption, until they are answered', async () => {
  const s = sim(['k1', 'k2', 'k3', 'k4'], { graceMs: 1000 });
  const [x] = s.put('/f', 1, ['k1', 'k2', 'k3'], 3);
  s.clock.t += 120_000;
  await s.commit({ type: 'mark-garbage', chunks: [{ id: x!, keepers: ['k4'] }], mtime: s.clock.t });
  s.clock.t += 2000;
  await s.gc.tick();
  assert.equal(s.repair.tasks.takeFor('k4', 10)[0]?.kind, TaskKind.DELETE);
  s.alive.delete('k4');
  s.repair.keeperDied('k4'); // a network blip
  s.alive.delete('k1');
  s.repair.keeperDied('k1');
  s.alive.add('k4');
  s.repair.keeperRestarted('k4');
  s.repair.keeperChanged('k4');
  await s.repair.onChunkReport('k4', [x!], true);
  await s.repair.tick();
  assert.ok(s.repair.tasks.has(TaskKind.DELETE, x!, 'k4'), 'the sent deletion is still known');
  assert.equal(s.state.chunkOwner(x!)!.chunk.replicas.includes('k4'), false, 'not adopted');
  assert.equal(s.repair.status().repairsInFlight, 0, 'and no copy headed for k4 (the only other keeper)');
});
