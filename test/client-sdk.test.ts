// The client against a stand-in cluster whose keepers fail on demand. A writer that gives up on
// one bad keeper, or a reader that trusts one damaged replica, loses data: these tests make each
// failure happen and check the client routes around it, or fails cleanly with the right code.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { connect, DfsError, type DfsClient } from '../src/index.js';
import { WorkerPool } from '../src/workers/pool.js';
import { createRng, fuzzSeed } from './helpers/fuzz.js';
import { startFakeCluster, sha256, type FakeCluster } from './helpers/fake-cluster.js';

let pool: WorkerPool;
before(() => {
  pool = new WorkerPool({ size: 2 });
});
after(() => pool.close());

const rng = createRng(fuzzSeed());

async function setup(t: { after(fn: () => Promise<void>): void }, options: Parameters<typeof startFakeCluster>[0] = {}): Promise<{ cluster: FakeCluster; client: DfsClient }> {
  const cluster = await startFakeCluster(options);
  const client = await connect({ master: cluster.master, pool });
  t.after(async () => {
    await client.close();
    await cluster.stop();
  });
  return { cluster, client };
}

async function readStream(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

test('put then get returns the same bytes, chunked exactly, for sizes around the chunk size', async (t) => {
  const { cluster, client } = await setup(t);
  const chunkSize = 4096;
  for (const size of [0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 5 * chunkSize + 3]) {
    const data = rng.bytes(size);
    const path = `/f-${size}`;
    const progress: number[] = [];
    const result = await client.put(path, Readable.from([data.subarray(0, 1000), data.subarray(1000)].filter((b) => b.length > 0)), {
      chunkSize, onProgress: (p) => progress.push(p.bytes),
    });
    assert.deepEqual(result, { path, size, chunks: Math.ceil(size / chunkSize) });
    const file = cluster.files.get(path)!;
    assert.equal(file.size, size);
    file.chunks.forEach((c, i) => {
      assert.equal(c.size, i < file.chunks.length - 1 ? chunkSize : size - i * chunkSize);
      assert.equal(c.sha256, sha256(data.subarray(i * chunkSize, i * chunkSize + c.size)));
      assert.equal(c.replicas.length, 3);
    });
    assert.equal(progress.at(-1) ?? 0, size);
    const stream = await client.get(path);
    assert.equal(stream.size, size);
    assert.ok((await readStream(stream)).equals(data), `round trip of ${size} bytes`);
  }
  assert.equal(cluster.begun[0]!.replication, 0, 'no replication given: the master picks its default');
});

test('a Buffer source and an async iterable source upload the same', async (t) => {
  const { client } = await setup(t);
  const data = rng.bytes(10_000);
  await client.put('/buf', data, { chunkSize: 3000, replication: 2 });
  await client.put('/iter', (async function* () { for (let i = 0; i < data.length; i += 777) yield data.subarray(i, i + 777); })(), { chunkSize: 3000 });
  assert.ok((await readStream(await client.get('/buf'))).equals(data));
  assert.ok((await readStream(await client.get('/iter'))).equals(data));
});

test('a keeper that fails its replica is excluded and the chunk is written again elsewhere', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 4, minReplicas: 3 });
  cluster.keepers[1]!.writeStatus = 'IO_ERROR';
  const data = rng.bytes(20_000);
  await client.put('/retry', data, { chunkSize: 5000 });
  const file = cluster.files.get('/retry')!;
  for (const c of file.chunks) {
    assert.equal(c.replicas.length, 3);
    assert.ok(!c.replicas.some((r) => r.id === 'keeper-1'), 'the failing keeper holds no committed replica');
  }
  assert.ok(cluster.allocations.some((a) => a.exclude.includes('keeper-1')), 're-allocation excluded the failing keeper');
  assert.ok((await readStream(await client.get('/retry'))).equals(data));
});

test('a chunk with fewer good replicas than required but at least the minimum is committed with the good ones only', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3, minReplicas: 2 });
  cluster.keepers[2]!.writeStatus = 'NO_SPACE';
  await client.put('/partial', rng.bytes(100), { chunkSize: 1000 });
  const [chunk] = cluster.files.get('/partial')!.chunks;
  assert.deepEqual(chunk!.replicas.map((r) => r.id).sort(), ['keeper-0', 'keeper-1']);
  assert.equal(cluster.allocations.length, 1, 'no retry was needed');
});

test('an unreachable first keeper is excluded and the upload goes on', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 4 });
  await cluster.kill(cluster.keepers[0]!);
  const data = rng.bytes(9000);
  await client.put('/dead-first', data, { chunkSize: 1000 });
  assert.ok(cluster.allocations.some((a) => a.exclude.includes('keeper-0')));
  assert.ok((await readStream(await client.get('/dead-first'))).equals(data));
});

test('a keeper pipeline that never acknowledges is given up after the write timeout and the chunk goes elsewhere', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 4, minReplicas: 2, replication: 2 });
  cluster.keepers[0]!.stallWrites = true;
  const data = rng.bytes(3000);
  const started = Date.now();
  await client.put('/stalled', data, { chunkSize: 1000, writeTimeoutMs: 200 });
  assert.ok(Date.now() - started < 5000);
  assert.ok(cluster.allocations.some((a) => a.exclude.includes('keeper-0')));
  assert.ok(cluster.files.get('/stalled')!.chunks.every((c) => !c.replicas.some((r) => r.id === 'keeper-0')));
  assert.ok((await readStream(await client.get('/stalled'))).equals(data));
});

test('when every pipeline fails the upload is aborted, nothing is committed, and the error says why', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 8, minReplicas: 1, replication: 1 });
  for (const k of cluster.keepers) k.writeReset = 'IO_ERROR';
  await assert.rejects(client.put('/never', rng.bytes(10), { chunkSize: 1000 }), (e: DfsError) => {
    assert.ok(e instanceof DfsError);
    assert.equal(e.code, 'PIPELINE_FAILED');
    assert.match(e.message, /chunk 0 of \/never: could not store 1 replicas in 5 attempts/);
    assert.match(e.message, /keeper-\d at 127\.0\.0\.1:\d+: IO_ERROR/);
    return true;
  });
  assert.equal(cluster.allocations.length, 5, 'bounded attempts');
  assert.equal(cluster.aborted.length, 1);
  assert.equal(cluster.committed.length, 0);
  assert.equal(cluster.files.has('/never'), false);
});

test('running out of keepers fails with NOT_ENOUGH_KEEPERS and aborts the upload', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3, minReplicas: 2 });
  cluster.keepers[0]!.writeReset = 'IO_ERROR';
  cluster.keepers[1]!.writeReset = 'IO_ERROR';
  cluster.keepers[2]!.writeReset = 'IO_ERROR';
  await assert.rejects(client.put('/short', rng.bytes(10), { chunkSize: 1000 }), (e: DfsError) => e.code === 'NOT_ENOUGH_KEEPERS');
  assert.equal(cluster.aborted.length, 1);
  assert.equal(cluster.committed.length, 0);
});

test('aborting a put cancels it with CANCEL, aborts the upload and commits nothing', async (t) => {
  const { cluster, client } = await setup(t);
  const controller = new AbortController();
  let sent = 0;
  const source = new Readable({
    highWaterMark: 1, // read only as chunks are taken: the abort comes after the upload began
    read() {
      sent++;
      if (sent === 3) controller.abort();
      // After the abort, never end: the upload must stop on its own.
      if (sent <= 3) this.push(Buffer.alloc(1000, sent));
    },
  });
  await assert.rejects(client.put('/aborted', source, { chunkSize: 1000, signal: controller.signal }), (e: DfsError) => e.code === 'CANCEL');
  assert.equal(cluster.aborted.length, 1);
  assert.equal(cluster.committed.length, 0);
  assert.ok(source.destroyed, 'the source is released');
});

test('aborting a put whose source has not yet filled its first chunk cancels it before any upload begins', async (t) => {
  const { cluster, client } = await setup(t);
  const controller = new AbortController();
  const source = new Readable({ read() {} }); // never gives a byte
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(client.put('/stuck', source, { signal: controller.signal }), (e: DfsError) => e.code === 'CANCEL');
  assert.equal(cluster.begun.length, 0);
  assert.ok(source.destroyed, 'the source is released');
});

test('a source that fails mid-way aborts the upload and surfaces as IO_ERROR', async (t) => {
  const { cluster, client } = await setup(t);
  const source = Readable.from((async function* () {
    yield Buffer.alloc(1500);
    throw new Error('disk went away');
  })());
  await assert.rejects(client.put('/broken', source, { chunkSize: 1000 }), (e: DfsError) => e.code === 'IO_ERROR' && /disk went away/.test(e.message));
  assert.equal(cluster.aborted.length, 1);
  assert.equal(cluster.committed.length, 0);
});

test('a source that fails before its first chunk is IO_ERROR naming the cause, and no upload begins', async (t) => {
  const { cluster, client } = await setup(t);
  const source = Readable.from((async function* () {
    throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
  })());
  await assert.rejects(client.put('/unreadable', source), (e: DfsError) =>
    e.code === 'IO_ERROR' && /reading the source failed: EACCES/.test(e.message));
  assert.equal(cluster.begun.length, 0);
  assert.equal(cluster.aborted.length, 0);
  assert.equal(cluster.committed.length, 0);
});

test('put keeps a bounded number of chunks in flight and reads the source only as slots free up', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3 });
  const chunkSize = 1000;
  let pulled = 0;
  let acked = 0;
  let maxAhead = 0;
  async function* source() {
    for (let i = 0; i < 40; i++) {
      pulled += chunkSize;
      maxAhead = Math.max(maxAhead, pulled - acked);
      yield Buffer.alloc(chunkSize, i);
    }
  }
  await client.put('/bounded', source(), { chunkSize, concurrency: 3, onProgress: (p) => (acked = p.bytes) });
  const maxWrites = Math.max(...cluster.keepers.map((k) => k.maxWritesInFlight));
  assert.ok(maxWrites <= 3, `at most 3 chunk writes at once, saw ${maxWrites}`);
  assert.ok(maxAhead <= 4 * chunkSize, `source read at most 4 chunks ahead of the acknowledgements, saw ${maxAhead / chunkSize}`);
});

test('get fails over from a damaged replica to a good one and spreads first reads across replicas', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3 });
  const data = rng.bytes(12_000);
  await client.put('/spread', data, { chunkSize: 1000 });
  assert.ok((await readStream(await client.get('/spread'))).equals(data));
  const reads = cluster.keepers.map((k) => k.reads);
  assert.ok(reads.every((n) => n >= 2), `reads spread over all keepers: ${reads.join(', ')}`);

  cluster.keepers[0]!.corrupt = true;
  assert.ok((await readStream(await client.get('/spread'))).equals(data), 'damaged replica skipped');
});

test('get fails with CHECKSUM_MISMATCH when every replica is damaged, and the stream errors', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3 });
  await client.put('/rotten', rng.bytes(3000), { chunkSize: 1000 });
  for (const k of cluster.keepers) k.corrupt = true;
  const stream = await client.get('/rotten');
  await assert.rejects(readStream(stream), (e: DfsError) => {
    assert.equal(e.code, 'CHECKSUM_MISMATCH');
    assert.match(e.message, /\/rotten: chunk 0 \(chunk-\d+\): all 3 replicas failed/);
    return true;
  });
});

test('get fails with UNAVAILABLE when every keeper is gone, naming each address', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3 });
  await client.put('/orphan', rng.bytes(500), { chunkSize: 1000 });
  for (const k of cluster.keepers) await cluster.kill(k);
  const stream = await client.get('/orphan');
  await assert.rejects(readStream(stream), (e: DfsError) => {
    assert.equal(e.code, 'UNAVAILABLE');
    for (const k of cluster.keepers) assert.ok(e.message.includes(k.address), `names ${k.address}`);
    return true;
  });
});

test('a replica that never answers is given up after the read timeout and the next one serves', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3 });
  const data = rng.bytes(4000);
  await client.put('/slow', data, { chunkSize: 1000 });
  cluster.keepers[1]!.stall = true;
  const started = Date.now();
  assert.ok((await readStream(await client.get('/slow', { readTimeoutMs: 200 }))).equals(data));
  assert.ok(Date.now() - started < 5000);
});

test('get reads a bounded number of chunks ahead of a slow consumer', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3 });
  // Larger than the stream's own 64 KiB buffer, so the read-ahead window is what is measured.
  const chunkSize = 100_000;
  await client.put('/ahead', rng.bytes(30 * chunkSize), { chunkSize });
  const file = cluster.files.get('/ahead')!;
  const indexOf = new Map(file.chunks.map((c, i) => [c.id, i]));
  const stream = await client.get('/ahead', { readAhead: 4 });
  let consumed = 0;
  let maxAhead = 0;
  for await (const piece of stream) {
    consumed += (piece as Buffer).length;
    await new Promise((r) => setTimeout(r, 5));
    const requested = Math.max(-1, ...cluster.keepers.flatMap((k) => k.readLog.map((id) => indexOf.get(id)!)));
    maxAhead = Math.max(maxAhead, requested + 1 - consumed / chunkSize);
  }
  assert.equal(consumed, 30 * chunkSize);
  assert.ok(maxAhead <= 5, `at most readAhead chunks fetched beyond the consumer (plus one being handed over), saw ${maxAhead}`);
});

test('destroying a get stream early stops its reads and leaves the client usable', async (t) => {
  const { client } = await setup(t, { keepers: 3 });
  const data = rng.bytes(20_000);
  await client.put('/early', data, { chunkSize: 1000 });
  const stream = await client.get('/early');
  for await (const _ of stream) break;
  assert.ok(stream.destroyed);
  assert.ok((await readStream(await client.get('/early'))).equals(data));
});

test('aborting a get errors the stream with CANCEL', async (t) => {
  const { cluster, client } = await setup(t, { keepers: 3 });
  await client.put('/abort-get', rng.bytes(5000), { chunkSize: 1000 });
  for (const k of cluster.keepers) k.stall = true;
  const controller = new AbortController();
  const stream = await client.get('/abort-get', { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(readStream(stream), (e: DfsError) => e.code === 'CANCEL');
});

test('get of a missing file or a directory rejects before any stream exists', async (t) => {
  const { client } = await setup(t);
  await assert.rejects(client.get('/nope'), (e: DfsError) => e.code === 'NOT_FOUND');
  await assert.rejects(client.get('/'), (e: DfsError) => e.code === 'IS_A_DIRECTORY');
});

test('namespace operations map to the master and its errors keep their codes', async (t) => {
  const { cluster, client } = await setup(t);
  await client.mkdir('/d', { parents: false });
  await assert.rejects(client.mkdir('/d'), (e: DfsError) => e.code === 'ALREADY_EXISTS');
  await client.put('/d/a', Buffer.from('hello'), { chunkSize: 1000 });
  const listed = await client.list('/d');
  assert.deepEqual(listed.map((e) => [e.name, e.type, e.size, e.count]), [['a', 'file', 5, 1]]);
  const st = await client.stat('/d/a');
  assert.equal(st.type, 'file');
  assert.equal(st.chunks[0]!.replicas.length, 3);
  assert.ok(st.chunks[0]!.replicas.every((r) => r.alive));
  assert.equal((await client.stat('/d')).type, 'directory');
  await client.rename('/d/a', '/d/b');
  assert.ok(cluster.files.has('/d/b'));
  const status = await client.status();
  assert.equal(status.files, 1);
  assert.equal(status.keepers.length, cluster.keepers.length);
  await client.remove('/d/b', { recursive: false });
  await assert.rejects(client.remove('/d/b'), (e: DfsError) => e.code === 'NOT_FOUND');
});

test('a dropped master connection is reopened for the next request', async (t) => {
  const { cluster, client } = await setup(t);
  await client.list('/');
  for (const c of cluster.masterServer.connections) c.destroy();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await client.list('/'), []);
});

test('connect to a master nobody listens on fails with UNAVAILABLE naming it', async () => {
  await assert.rejects(connect({ master: '127.0.0.1:1', pool }), (e: DfsError) => e.code === 'UNAVAILABLE' && e.message.includes('127.0.0.1:1'));
});

test('a closed client refuses further calls', async (t) => {
  const { client } = await setup(t);
  await client.close();
  await assert.rejects(client.list('/'), (e: DfsError) => e.code === 'CANCEL');
});

test('invalid put options are refused before the master is asked', async (t) => {
  const { cluster, client } = await setup(t);
  await assert.rejects(client.put('/x', Buffer.alloc(1), { chunkSize: 64 * 1024 * 1024 + 1 }), (e: DfsError) => e.code === 'INVALID_ARGUMENT');
  await assert.rejects(client.put('/x', Buffer.alloc(1), { replication: 256 }), (e: DfsError) => e.code === 'INVALID_ARGUMENT');
  await assert.rejects(client.put('/x', Buffer.alloc(1), { replication: 17 }), (e: DfsError) => e.code === 'INVALID_ARGUMENT' && /outside 1\.\.16/.test(e.message));
  await assert.rejects(client.put('/x', Buffer.alloc(1), { chunkSize: 1.5 }), (e: DfsError) => e.code === 'INVALID_ARGUMENT' && /whole number/.test(e.message));
  await assert.rejects(client.put('/x', 'not a source' as unknown as Buffer), (e: DfsError) => e.code === 'INVALID_ARGUMENT');
  assert.equal(cluster.begun.length, 0);
});

test('the API checks paths as the master does and refuses bad ones with INVALID_ARGUMENT before sending', async (t) => {
  const { cluster, client } = await setup(t);
  const bad = (why: RegExp) => (e: unknown) => e instanceof DfsError && e.code === 'INVALID_ARGUMENT' && why.test(e.message);
  const long = `/${'x'.repeat(5000)}`;
  await assert.rejects(client.stat(long), bad(/5001 bytes long, more than the limit of 4096/));
  await assert.rejects(client.list('relative'), bad(/not absolute/));
  await assert.rejects(client.put('/a/', Buffer.alloc(1)), bad(/ends with '\/'/));
  await assert.rejects(client.put(`/${'y'.repeat(300)}`, Buffer.alloc(1)), bad(/limit of 255/));
  await assert.rejects(client.get('/a\tb'), bad(/control character/));
  await assert.rejects(client.mkdir('/a/..'), bad(/'\.\.'/));
  await assert.rejects(client.remove('//a'), bad(/empty name/));
  await assert.rejects(client.rename('/a', long), bad(/limit of 4096/));
  assert.equal(cluster.begun.length, 0);
  assert.deepEqual([...cluster.dirs], ['/']);
});

test('a signal aborted before the call is CANCEL as a DfsError, and nothing reaches the master', async (t) => {
  const { cluster, client } = await setup(t);
  const signal = AbortSignal.abort();
  const isCancel = (e: unknown) => e instanceof DfsError && e.code === 'CANCEL';
  await assert.rejects(client.list('/', { signal }), isCancel);
  await assert.rejects(client.stat('/', { signal }), isCancel);
  await assert.rejects(client.get('/x', { signal }), isCancel);
  await assert.rejects(client.put('/x', Buffer.alloc(1), { signal }), isCancel);
  await assert.rejects(client.mkdir('/x', { signal }), isCancel);
  assert.equal(cluster.begun.length, 0);
  assert.equal(cluster.dirs.has('/x'), false);
});
