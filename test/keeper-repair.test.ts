// The keeper's side of repair (wire-spec.md §11.1, "Heartbeats", "Chunk reports", "Corruption"):
// real keepers on loopback against a fake master that hands out tasks and records every heartbeat
// body and report page. If the keeper got any of this wrong, the master would reconcile against a
// wrong inventory, wait for results that never come, or keep serving a damaged replica.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { open, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { call, callForBuffer, readAll, type Address } from '../src/transport/index.js';
import { READ_CHUNK, TaskKind, WRITE_CHUNK } from '../src/protocol/ops.js';
import type { KeeperHandle, KeeperOptions } from '../src/keeper/keeper.js';
import { startFakeMaster, type FakeMaster } from './helpers/fake-master.js';
import { connectTo, startTestKeeper, tempDir, type Cleanup } from './helpers/keeper-fixtures.js';
import { storedReplica } from './helpers/stored-replicas.js';

type T = Cleanup;

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const newId = (): string => randomBytes(16).toString('hex');
let nextTask = 1;
const taskId = (): number => nextTask++;

async function master(t: T): Promise<FakeMaster> {
  const m = await startFakeMaster();
  t.after(() => m.server.close());
  return m;
}

function keeper(t: T, at: Address, extra: Partial<KeeperOptions> = {}): Promise<KeeperHandle> {
  return startTestKeeper(t, at, { scrubRate: 0, ...extra });
}

const client = connectTo;

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function put(t: T, k: KeeperHandle, data: Buffer, chunkId = newId()): Promise<string> {
  const { response } = await callForBuffer(await client(t, k.address), WRITE_CHUNK,
    { chunkId, size: data.length, sha256: sha(data), downstream: [] }, { body: data });
  assert.equal(response.acks[0]!.status, 'NO_ERROR', response.acks[0]!.message);
  return chunkId;
}

/** Flips one data byte of a stored chunk on disk, behind the keeper's back. */
async function damage(k: KeeperHandle, chunkId: string, at = 10): Promise<void> {
  const r = await storedReplica(k.store.dir, chunkId);
  const fh = await open(r.file, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, r.dataOffset + at);
  b[0] = b[0]! ^ 0x55;
  await fh.write(b, 0, 1, r.dataOffset + at);
  await fh.close();
}

function resultOf(m: FakeMaster, id: number) {
  return m.results().find((r) => r.taskId === id);
}

async function waitResult(m: FakeMaster, id: number, ms = 10_000) {
  await waitFor(`the result of task ${id}`, () => resultOf(m, id) !== undefined, ms);
  return resultOf(m, id)!;
}

test('the keeper reports every chunk it holds after its first heartbeat and whenever asked, in pages, the last one final', async (t) => {
  const m = await master(t);
  const lines: string[] = [];
  const k = await keeper(t, m.address, { chunkReportPage: 3, log: (l) => lines.push(l) });
  // An empty store sends one page: empty and final.
  await waitFor('the first report', () => m.reports(k.id).length === 1);
  assert.deepEqual(lines.filter((l) => /report failed/.test(l)), [], 'the first report goes out at once');
  assert.deepEqual(m.pages.map((p) => [p.ids.length, p.final]), [[0, true]]);
  assert.ok(m.beats.length >= 1 && m.beats[0]!.at <= m.pages[0]!.at, 'the report follows the first heartbeat');

  const ids: string[] = [];
  for (let i = 0; i < 7; i++) ids.push(await put(t, k, randomBytes(1000 + i)));
  await sleep(200);
  assert.equal(m.reports(k.id).length, 1, 'no report unless the master asks');

  m.askReport(k.id);
  await waitFor('the second report', () => m.reports(k.id).length === 2);
  const pages = m.pages.slice(1);
  assert.deepEqual(pages.map((p) => [p.ids.length, p.final]), [[3, false], [3, false], [1, true]]);
  assert.deepEqual([...m.reports(k.id)[1]!].sort(), [...ids].sort());
  await waitFor('the keeper to count the report', () => k.chunkReports === 2);
});

test('a refused chunk report is retried from its first page, and requests during it do not start another', async (t) => {
  const m = await master(t);
  m.refuseReports = 2;
  const dataDir = await tempDir(t);
  const k = await keeper(t, m.address, { chunkReportPage: 2, dataDir });
  await waitFor('the report after two refusals', () => m.reports(k.id).length === 1);
  assert.equal(m.refuseReports, 0);
  const ids = [await put(t, k, randomBytes(10)), await put(t, k, randomBytes(20)), await put(t, k, randomBytes(30))];
  m.refuseReports = 1;
  m.askReport(k.id);
  await waitFor('the report was asked for', () => m.refuseReports === 0);
  m.askReport(k.id); // while the first is in back-off
  await waitFor('the next report', () => m.reports(k.id).length === 2);
  await sleep(300);
  assert.equal(m.reports(k.id).length, 2, 'the request made during the report was answered by it');
  assert.deepEqual([...m.reports(k.id)[1]!].sort(), [...ids].sort());
  assert.ok(m.pages.slice(1).every((p) => p.ids.length <= 2));

  // A restart reports again on its own: what it finds on disk, never a temp file.
  await k.close();
  await writeFile(join(dataDir, 'tmp', `${newId()}.0badf00d`), 'half a chunk');
  const again = await keeper(t, m.address, { chunkReportPage: 2, dataDir });
  await waitFor('the report after the restart', () => m.reports(again.id).length === 3);
  assert.deepEqual([...m.reports(again.id)[2]!].sort(), [...ids].sort());
});

test('heartbeats carry a body only when there is something to report', async (t) => {
  const m = await master(t);
  await keeper(t, m.address);
  await waitFor('a few heartbeats', () => m.beats.length >= 4);
  assert.ok(m.beats.every((b) => b.body === null));
});

test('COPY sends a verified replica to another keeper; copying again succeeds; a missing chunk is NOT_FOUND', async (t) => {
  const m = await master(t);
  const k1 = await keeper(t, m.address, { heartbeatMs: 1000 });
  const k2 = await keeper(t, m.address, { heartbeatMs: 1000 });
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const chunkId = await put(t, k1, data);

  const copy = { taskId: taskId(), kind: TaskKind.COPY, chunkId, targetId: k2.id, targetAddress: k2.address };
  const handedOut = m.beats.length;
  m.queue(k1.id, copy);
  await waitFor('the task to be handed out', () => m.beats.length > handedOut);
  const sentAt = Date.now();
  assert.deepEqual(await waitResult(m, copy.taskId), { taskId: copy.taskId, status: 'NO_ERROR' });
  // The result does not wait for the next 1 s heartbeat.
  assert.ok(Date.now() - sentAt < 800, `result arrived after ${Date.now() - sentAt} ms`);
  const read = await callForBuffer(await client(t, k2.address), READ_CHUNK, { chunkId });
  assert.equal(read.response.sha256, sha(data));
  assert.ok(read.body.equals(data));

  const again = { ...copy, taskId: taskId() };
  m.queue(k1.id, again);
  assert.equal((await waitResult(m, again.taskId)).status, 'NO_ERROR');

  const missing = { ...copy, taskId: taskId(), chunkId: newId() };
  m.queue(k1.id, missing);
  assert.equal((await waitResult(m, missing.taskId)).status, 'NOT_FOUND');

  const wrongTarget = { ...copy, taskId: taskId(), targetId: newId() };
  m.queue(k1.id, wrongTarget);
  const wrong = await waitResult(m, wrongTarget.taskId);
  assert.equal(wrong.status, 'INVALID_ARGUMENT');
  assert.match(wrong.message!, new RegExp(`is keeper ${k2.id}`));

  // Each result is delivered once, and early heartbeats keep their distance.
  const ids = m.results().map((r) => r.taskId);
  assert.equal(new Set(ids).size, ids.length, 'no result is sent twice once acknowledged');
  const gaps = m.beats.filter((b) => b.request.keeperId === k1.id).map((b, i, all) => (i === 0 ? Infinity : b.at - all[i - 1]!.at));
  // 100 ms apart when sent; seen here on arrival, where a loaded machine can bring two closer.
  // Without the gap, early heartbeats arrive a few ms apart.
  assert.ok(Math.min(...gaps) >= 50, `heartbeats ${Math.min(...gaps)} ms apart`);
});

test('COPY keeps to the repair bandwidth', async (t) => {
  const m = await master(t);
  const k1 = await keeper(t, m.address, { repairBandwidth: 2 * 1024 * 1024 });
  const k2 = await keeper(t, m.address);
  const data = randomBytes(2 * 1024 * 1024);
  const chunkId = await put(t, k1, data);
  const copy = { taskId: taskId(), kind: TaskKind.COPY, chunkId, targetId: k2.id, targetAddress: k2.address };
  const started = Date.now();
  m.queue(k1.id, copy);
  assert.equal((await waitResult(m, copy.taskId)).status, 'NO_ERROR');
  // 2 MiB at 2 MiB/s with a 256 KiB burst: at least about 0.85 s.
  assert.ok(Date.now() - started >= 800, `copied in ${Date.now() - started} ms`);
  assert.ok(k2.store.has(chunkId));
});

test('COPY to a target that cannot take the chunk reports its error, and the target keeps what it had', async (t) => {
  const m = await master(t);
  const k1 = await keeper(t, m.address);
  const k2 = await keeper(t, m.address, { capacity: 100_000 });
  const kept = await put(t, k2, randomBytes(60_000));
  const chunkId = await put(t, k1, randomBytes(50_000));
  const copy = { taskId: taskId(), kind: TaskKind.COPY, chunkId, targetId: k2.id, targetAddress: k2.address };
  m.queue(k1.id, copy);
  const result = await waitResult(m, copy.taskId);
  assert.equal(result.status, 'NO_SPACE');
  assert.match(result.message!, /does not fit/);
  assert.equal(k2.store.has(chunkId), false);
  assert.ok(k2.store.has(kept));
  assert.deepEqual(await readdir(join(k2.store.dir, 'tmp')), []);
});

test('a COPY whose target does not answer fails with its error instead of hanging', async (t) => {
  const m = await master(t);
  const k1 = await keeper(t, m.address);
  const chunkId = await put(t, k1, randomBytes(1000));
  const copy = { taskId: taskId(), kind: TaskKind.COPY, chunkId, targetAddress: '127.0.0.1:1' };
  m.queue(k1.id, copy);
  const result = await waitResult(m, copy.taskId);
  assert.equal(result.status, 'UNAVAILABLE');
  assert.match(result.message!, /127\.0\.0\.1:1/);
});

test('DELETE removes the replica; deleting a replica already gone is NO_ERROR', async (t) => {
  const m = await master(t);
  const k = await keeper(t, m.address);
  const chunkId = await put(t, k, randomBytes(5000));
  const del = { taskId: taskId(), kind: TaskKind.DELETE, chunkId };
  m.queue(k.id, del);
  assert.equal((await waitResult(m, del.taskId)).status, 'NO_ERROR');
  assert.equal(k.store.has(chunkId), false);
  await assert.rejects(callForBuffer(await client(t, k.address), READ_CHUNK, { chunkId }), { code: 'NOT_FOUND' });
  const again = { ...del, taskId: taskId() };
  m.queue(k.id, again);
  assert.equal((await waitResult(m, again.taskId)).status, 'NO_ERROR');
  const bad = { ...del, taskId: taskId(), chunkId: '../../etc/passwd' };
  m.queue(k.id, bad);
  assert.equal((await waitResult(m, bad.taskId)).status, 'INVALID_ARGUMENT');
});

test('VERIFY of a replica damaged on disk quarantines it, reports it corrupt exactly once, and it is never served again', async (t) => {
  const m = await master(t);
  const lines: string[] = [];
  const k = await keeper(t, m.address, { log: (l) => lines.push(l) });
  const good = await put(t, k, randomBytes(300_000));
  const bad = await put(t, k, randomBytes(300_000));
  await damage(k, bad, 123_456);

  const checkGood = { taskId: taskId(), kind: TaskKind.VERIFY, chunkId: good };
  const checkBad = { taskId: taskId(), kind: TaskKind.VERIFY, chunkId: bad };
  m.queue(k.id, checkGood, checkBad);
  assert.equal((await waitResult(m, checkGood.taskId)).status, 'NO_ERROR');
  assert.equal((await waitResult(m, checkBad.taskId)).status, 'CHECKSUM_MISMATCH');
  await waitFor('the corrupt report', () => m.corrupt().includes(bad));
  await sleep(300); // more heartbeats
  assert.deepEqual(m.corrupt(), [bad], 'listed once, in one heartbeat');
  assert.equal(k.store.has(bad), false);
  assert.equal((await readdir(join(k.store.dir, 'quarantine'))).length, 1);
  await assert.rejects(callForBuffer(await client(t, k.address), READ_CHUNK, { chunkId: bad }), { code: 'NOT_FOUND' });
  assert.equal(lines.filter((l) => l.includes(bad)).length, 1, lines.join('\n'));

  // Verifying it again finds nothing to verify; the good replica is still served.
  const again = { ...checkBad, taskId: taskId() };
  m.queue(k.id, again);
  assert.equal((await waitResult(m, again.taskId)).status, 'NOT_FOUND');
  assert.equal((await callForBuffer(await client(t, k.address), READ_CHUNK, { chunkId: good })).response.size, 300_000);
  assert.deepEqual(m.corrupt(), [bad]);
});

test('a damaged replica found by a client read is reported corrupt once', async (t) => {
  const m = await master(t);
  const k = await keeper(t, m.address);
  const chunkId = await put(t, k, randomBytes(10_000));
  await damage(k, chunkId);
  await assert.rejects(callForBuffer(await client(t, k.address), READ_CHUNK, { chunkId }), { code: 'CHECKSUM_MISMATCH' });
  await waitFor('the corrupt report', () => m.corrupt().length > 0);
  await sleep(200);
  assert.deepEqual(m.corrupt(), [chunkId]);
});

test('the scrubber finds a replica damaged on disk, quarantines it, logs one line and reports it once', async (t) => {
  const m = await master(t);
  const lines: string[] = [];
  const k = await keeper(t, m.address, { scrubRate: 64 * 1024 * 1024, scrubCycleMinMs: 20, log: (l) => lines.push(l) });
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(await put(t, k, randomBytes(i === 0 ? 3 * 1024 * 1024 : 40_000)));
  await waitFor('a clean pass', () => k.scrubber!.passes >= 2);
  assert.equal(k.scrubber!.damagedFound, 0);
  assert.deepEqual(m.corrupt(), []);

  await damage(k, ids[0]!, 2 * 1024 * 1024);
  await damage(k, ids[2]!, 5);
  await waitFor('the corrupt reports', () => m.corrupt().length === 2);
  const passes = k.scrubber!.passes;
  await waitFor('another pass', () => k.scrubber!.passes > passes + 1);
  assert.deepEqual([...m.corrupt()].sort(), [ids[0]!, ids[2]!].sort());
  assert.equal(k.scrubber!.damagedFound, 2);
  assert.deepEqual(k.store.list().map((c) => c.id).sort(), [ids[1]!, ids[3]!].sort());
  for (const id of [ids[0]!, ids[2]!]) assert.equal(lines.filter((l) => l.includes(id)).length, 1, lines.join('\n'));
  assert.match(lines.find((l) => l.includes(ids[0]!))!, /\(scrub\).*quarantined/);
});

test('the scrubber keeps to its rate', async (t) => {
  const m = await master(t);
  const k = await keeper(t, m.address, { scrubRate: 4 * 1024 * 1024, scrubCycleMinMs: 10 });
  await put(t, k, randomBytes(6 * 1024 * 1024));
  const started = Date.now();
  const before = k.scrubber!.passes;
  // The first pass to end may have begun before the chunk was there; the one after reads it all.
  await waitFor('a whole pass', () => k.scrubber!.passes >= before + 2, 10_000);
  // 6 MiB at 4 MiB/s with a 1 MiB burst: at least about 1.25 s.
  assert.ok(Date.now() - started >= 1100, `a pass took ${Date.now() - started} ms`);
});

test('a write that does not fit fails fast with NO_SPACE, nothing stored is damaged, and the keeper says it is full', async (t) => {
  const m = await master(t);
  const k = await keeper(t, m.address, { capacity: 100_000, reserve: 20_000 });
  const first = randomBytes(60_000);
  const firstId = await put(t, k, first);
  assert.equal((await k.report()).acceptingWrites, true, '40 000 bytes free, above the reserve');
  const second = await put(t, k, randomBytes(25_000));
  assert.equal((await k.report()).acceptingWrites, false, '15 000 bytes free, below the reserve');
  const big = randomBytes(20_000);
  const { response } = await callForBuffer(await client(t, k.address), WRITE_CHUNK,
    { chunkId: newId(), size: big.length, sha256: sha(big), downstream: [] }, { body: big });
  assert.equal(response.acks[0]!.status, 'NO_SPACE');
  assert.match(response.acks[0]!.message!, /does not fit/);
  assert.deepEqual(await readdir(join(k.store.dir, 'tmp')), []);
  assert.equal(k.store.reserved(), 0);
  assert.deepEqual(k.store.list().map((c) => c.id).sort(), [firstId, second].sort());
  assert.ok((await callForBuffer(await client(t, k.address), READ_CHUNK, { chunkId: firstId })).body.equals(first));
  await waitFor('a heartbeat saying full', () => m.beats.at(-1)!.request.acceptingWrites === false);
  assert.equal(m.beats.at(-1)!.request.diskError, undefined, 'being full is not a disk error');
});

test('a disk error stops writes for a while and is named in the heartbeat; the failed write leaves nothing behind', async (t) => {
  const m = await master(t);
  const lines: string[] = [];
  const k = await keeper(t, m.address, { diskErrorHoldMs: 1500, log: (l) => lines.push(l) });
  // Chunks with ids starting "ab" can no longer be renamed into place (too big for a pack, each has a file).
  await rm(join(k.store.dir, 'chunks', 'ab'), { recursive: true });
  await writeFile(join(k.store.dir, 'chunks', 'ab'), 'in the way');
  const data = randomBytes(k.store.packMax + 5000);
  const chunkId = `ab${newId().slice(2)}`;
  const { response } = await callForBuffer(await client(t, k.address), WRITE_CHUNK,
    { chunkId, size: data.length, sha256: sha(data), downstream: [] }, { body: data });
  assert.equal(response.acks[0]!.status, 'IO_ERROR');
  assert.match(response.acks[0]!.message!, /ENOTDIR/);
  const retry = await callForBuffer(await client(t, k.address), WRITE_CHUNK,
    { chunkId, size: data.length, sha256: sha(data), downstream: [] }, { body: data });
  assert.equal(retry.response.acks[0]!.status, 'IO_ERROR');
  assert.equal(lines.filter((l) => l.includes('disk error')).length, 1, 'one line while the errors go on');
  assert.deepEqual(await readdir(join(k.store.dir, 'tmp')), []);
  await waitFor('a heartbeat naming the error', () => /ENOTDIR/.test(m.beats.at(-1)!.request.diskError ?? ''));
  assert.equal(m.beats.at(-1)!.request.acceptingWrites, false);
  await waitFor('writes accepted again', () => m.beats.at(-1)!.request.acceptingWrites === true, 5000);
  assert.equal(m.beats.at(-1)!.request.diskError, undefined);
});

test('tasks beyond the queue are answered UNAVAILABLE at once; the queued ones still run', async (t) => {
  const m = await master(t);
  const k1 = await keeper(t, m.address, { taskConcurrency: 1, taskQueue: 2, repairBandwidth: 256 * 1024 });
  const k2 = await keeper(t, m.address);
  const chunkId = await put(t, k1, randomBytes(1024 * 1024));
  const slow = { taskId: taskId(), kind: TaskKind.COPY, chunkId, targetId: k2.id, targetAddress: k2.address };
  m.queue(k1.id, slow);
  await waitFor('the copy to start', () => k1.tasks.running === 1);
  const dels = [1, 2, 3, 4].map(() => ({ taskId: taskId(), kind: TaskKind.DELETE, chunkId: newId() }));
  m.queue(k1.id, ...dels);
  for (const d of dels.slice(2)) {
    const r = await waitResult(m, d.taskId, 1000);
    assert.equal(r.status, 'UNAVAILABLE');
    assert.match(r.message!, /queue full/);
  }
  assert.equal(resultOf(m, dels[0]!.taskId), undefined, 'queued behind the copy');
  assert.equal((await waitResult(m, slow.taskId)).status, 'NO_ERROR');
  for (const d of dels.slice(0, 2)) assert.equal((await waitResult(m, d.taskId)).status, 'NO_ERROR');
});

test('a task handed out twice runs once', async (t) => {
  const m = await master(t);
  const k = await keeper(t, m.address, { taskConcurrency: 1, repairBandwidth: 256 * 1024 });
  const k2 = await keeper(t, m.address);
  const chunkId = await put(t, k, randomBytes(256 * 1024));
  const copy = { taskId: taskId(), kind: TaskKind.COPY, chunkId, targetId: k2.id, targetAddress: k2.address };
  m.queue(k.id, copy);
  await waitFor('the copy to start', () => k.tasks.running === 1);
  m.queue(k.id, copy);
  await waitResult(m, copy.taskId);
  await sleep(300);
  assert.equal(m.results().filter((r) => r.taskId === copy.taskId).length, 1);
});

test('rewriting a chunk the keeper holds damaged replaces it and reports the damaged copy', async (t) => {
  const m = await master(t);
  const k = await keeper(t, m.address);
  const data = randomBytes(100_000);
  const chunkId = await put(t, k, data);
  await damage(k, chunkId);
  await put(t, k, data, chunkId);
  assert.ok((await callForBuffer(await client(t, k.address), READ_CHUNK, { chunkId })).body.equals(data));
  await waitFor('the corrupt report', () => m.corrupt().length > 0);
  assert.deepEqual(m.corrupt(), [chunkId]);
});

test('dfs keeper passes its repair settings to the keeper it runs', async (t) => {
  const { keeper: keeperCommand } = await import('../src/cli/server-commands.js');
  const { PassThrough } = await import('node:stream');
  const m = await master(t);
  const stop = new AbortController();
  const stderr = new PassThrough();
  stderr.resume();
  const running = keeperCommand.run([
    '--master', `127.0.0.1:${m.address.port}`, '--listen', '127.0.0.1:0', '--data', await tempDir(t),
    '--task-queue', '0', '--task-concurrency', '1', '--repair-bandwidth', '64KiB', '--scrub-rate', '0', '--reserve', '2GiB', '--capacity', '1GiB',
  ], { stdout: new PassThrough(), stderr, env: {}, signal: stop.signal });
  t.after(async () => {
    stop.abort();
    await running;
  });
  await waitFor('a heartbeat', () => m.beats.length > 0);
  const id = m.beats[0]!.request.keeperId;
  assert.equal(m.beats[0]!.request.acceptingWrites, false, 'a reserve above the capacity leaves no room');
  // One runs at once and none may wait.
  const dels = [1, 2, 3].map(() => ({ taskId: taskId(), kind: TaskKind.DELETE, chunkId: newId() }));
  m.queue(id, ...dels);
  const statuses = [];
  for (const d of dels) statuses.push((await waitResult(m, d.taskId)).status);
  assert.deepEqual(statuses, ['NO_ERROR', 'UNAVAILABLE', 'UNAVAILABLE']);
});

test('closing a keeper does not wait for a copy to a target that stopped reading', async (t) => {
  const { RpcServer, listen } = await import('../src/transport/index.js');
  const m = await master(t);
  const k = await keeper(t, m.address, { taskConcurrency: 1 });
  const rpc = new RpcServer().register(WRITE_CHUNK, ({ signal }) => new Promise((_, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  }));
  const stuck = await listen({ host: '127.0.0.1', port: 0 }, (conn) => rpc.serve(conn));
  t.after(() => stuck.close());
  const chunkId = await put(t, k, randomBytes(8 * 1024 * 1024));
  m.queue(k.id, { taskId: taskId(), kind: TaskKind.COPY, chunkId, targetAddress: `127.0.0.1:${stuck.address.port}` });
  await waitFor('the copy to start', () => k.tasks.running === 1);
  await sleep(300);
  const started = Date.now();
  await k.close();
  assert.ok(Date.now() - started < 3000, `close took ${Date.now() - started} ms`);
});

test('a queued DELETE of a chunk that is being written again is answered CANCEL and the new copy stays', async (t) => {
  const m = await master(t);
  const k1 = await keeper(t, m.address, { taskConcurrency: 1, repairBandwidth: 256 * 1024 });
  const k2 = await keeper(t, m.address);
  const busy = await put(t, k1, randomBytes(1024 * 1024));
  const data = randomBytes(5000);
  const chunkId = await put(t, k1, data);
  // A slow copy occupies the only slot, so the deletion waits in the queue.
  const slow = { taskId: taskId(), kind: TaskKind.COPY, chunkId: busy, targetId: k2.id, targetAddress: k2.address };
  m.queue(k1.id, slow);
  await waitFor('the copy to start', () => k1.tasks.running === 1);
  const del = { taskId: taskId(), kind: TaskKind.DELETE, chunkId };
  m.queue(k1.id, del);
  await waitFor('the deletion to be queued', () => k1.tasks.queued === 1);
  // The same chunk arrives again (a repair copy from another keeper): the queued deletion is void.
  const conn = await client(t, k1.address);
  const reply = await call(conn, WRITE_CHUNK, { chunkId, size: data.length, sha256: createHash('sha256').update(data).digest('hex'), downstream: [] }, { body: data });
  await readAll(reply.body, 1024);
  assert.equal(reply.response.acks[0]!.status, 'NO_ERROR');
  const r = await waitResult(m, del.taskId);
  assert.equal(r.status, 'CANCEL');
  assert.equal((await waitResult(m, slow.taskId)).status, 'NO_ERROR');
  assert.equal(k1.store.has(chunkId), true, 'the copy that arrived is kept');
});
