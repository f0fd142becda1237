// The chunk store is the keeper's promise that an acknowledged chunk is on disk intact and that
// damaged bytes are never served: these tests break it on purpose (bad hashes, flipped bits,
// leftovers of a kill -9, a second keeper, a full disk) and check it says so with the right code.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DfsError } from '../src/wire/errors.js';
import { WorkerPool, fsError, type FileWriteSession } from '../src/workers/index.js';
import { ChunkStore, type ChunkStoreOptions } from '../src/keeper/chunk-store.js';
import { CHUNK_HEADER_SIZE, decodeChunkHeader, encodeChunkHeader } from '../src/keeper/chunk-header.js';
import { createRng } from './helpers/fuzz.js';
import { storedReplica } from './helpers/stored-replicas.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SEED = Number(process.env.DFS_SEED ?? Math.floor(Math.random() * 2 ** 32));

/** Seeded bytes and integers, so a failure can be replayed with DFS_SEED. */
const rng = (seed: number) => createRng(seed);

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const newId = (): string => randomBytes(16).toString('hex');
const code = (c: string) => (e: unknown) => e instanceof DfsError && e.code === c;

const pool = new WorkerPool();
after(() => pool.close());

type T = { after(fn: () => Promise<void> | void): void };

async function tempDir(t: T): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function openStore(t: T, dir: string, opts: Partial<ChunkStoreOptions> = {}): Promise<ChunkStore> {
  const store = await ChunkStore.open(dir, { pool, ...opts });
  t.after(() => store.close());
  return store;
}

/** Writes a chunk in random pieces, as the network would deliver it. */
async function put(store: ChunkStore, id: string, data: Buffer, r = rng(SEED)): Promise<void> {
  const w = await store.createWriter(id, data.length, sha(data));
  for (let at = 0; at < data.length; ) {
    const n = Math.min(data.length - at, r.int(1, 300_000));
    await w.write(data.subarray(at, at + n));
    at += n;
  }
  await w.commit();
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

test(`a chunk written in pieces reads back whole and verified, and survives a reopen (seed ${SEED})`, async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const r = rng(SEED);
  const chunks = [0, 1, 4096, r.int(300_000, 3_000_000)].map((n) => ({ id: newId(), data: r.bytes(n) }));
  for (const c of chunks) await put(store, c.id, c.data, r);

  for (const c of chunks) {
    assert.ok(store.has(c.id));
    const got = await store.read(c.id);
    assert.deepEqual(got.data, c.data, `size ${c.data.length} (seed ${SEED})`);
    assert.equal(got.sha256, sha(c.data));
    assert.deepEqual(await collect(store.readStream(c.id, { pieceSize: 100_000 })), c.data);
  }
  const total = chunks.reduce((n, c) => n + c.data.length, 0);
  assert.equal(store.count(), chunks.length);
  assert.equal(store.used(), total);
  assert.equal(store.reserved(), 0);

  const c = chunks[3]!; // too big for a pack: a file of its own
  const file = join(dir, 'chunks', c.id.slice(0, 2), c.id);
  assert.equal((await stat(file)).size, CHUNK_HEADER_SIZE + c.data.length, 'chunks/<ab>/<id> holds header + data');
  const header = decodeChunkHeader(await readFile(file));
  assert.ok(!('invalid' in header));
  assert.equal(header.sha256, sha(c.data));
  assert.deepEqual(await readdir(join(dir, 'tmp')), []);

  await store.close();
  const again = await openStore(t, dir);
  const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
  assert.deepEqual(again.list().sort(byId), store.list().sort(byId));
  assert.equal(again.used(), total);
  assert.deepEqual((await again.read(c.id)).data, c.data);
});

test('a chunk whose bytes do not match the declared hash or size is refused and leaves nothing behind', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const data = rng(SEED).bytes(200_000);

  const bad = await store.createWriter(newId(), data.length, sha(Buffer.from('something else')));
  await bad.write(data);
  await assert.rejects(bad.commit(), (e: DfsError) => e.code === 'CHECKSUM_MISMATCH' && e.retriable);
  assert.equal(store.has(bad.id), false);

  const short = await store.createWriter(newId(), data.length, sha(data));
  await short.write(data.subarray(1));
  await assert.rejects(short.commit(), (e: DfsError) => e.code === 'CHECKSUM_MISMATCH' && /received 199999 of 200000/.test(e.message));

  const long = await store.createWriter(newId(), data.length, sha(data));
  await long.write(data);
  await assert.rejects(long.write(Buffer.from('!')), code('CHECKSUM_MISMATCH'));
  await assert.rejects(long.commit(), code('CHECKSUM_MISMATCH'), 'a failed writer stays failed');

  const aborted = await store.createWriter(newId(), data.length, sha(data));
  await aborted.write(data.subarray(0, 1000));
  await aborted.abort();
  await assert.rejects(aborted.write(data), code('INVALID_ARGUMENT'));

  assert.equal(store.count(), 0);
  assert.equal(store.used(), 0);
  assert.equal(store.reserved(), 0);
  assert.deepEqual(await readdir(join(dir, 'tmp')), [], 'temp files are deleted');
  for (const fan of await readdir(join(dir, 'chunks'))) assert.deepEqual(await readdir(join(dir, 'chunks', fan)), []);
});

for (const size of [300_000, 4096]) test(`a stored ${size}-byte chunk with a flipped bit or a missing tail fails to read with CHECKSUM_MISMATCH, never returning its bytes`, async (t) => {
  // 300,000 bytes are read and hashed in a worker, 4,096 on the keeper's own thread: both must check.
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const data = rng(SEED).bytes(size);
  const flipped = newId();
  const cut = newId();
  await put(store, flipped, data);
  await put(store, cut, data);

  // 4,096 bytes go to a pack, 300,000 to a file of their own; `cut` is the pack's last record.
  const flippedAt = await storedReplica(dir, flipped);
  assert.equal(flippedAt.packed, size <= store.packMax);
  const fh = await open(flippedAt.file, 'r+');
  const at = flippedAt.dataOffset + rng(SEED).int(0, data.length - 1);
  const one = Buffer.alloc(1);
  await fh.read(one, 0, 1, at);
  one[0]! ^= 0x10;
  await fh.write(one, 0, 1, at);
  await fh.close();
  await assert.rejects(store.read(flipped), (e: DfsError) => e.code === 'CHECKSUM_MISMATCH' && /damaged/.test(e.message));
  await assert.rejects(collect(store.readStream(flipped, { pieceSize: 64 * 1024 })), code('CHECKSUM_MISMATCH'));

  const cutAt = await storedReplica(dir, cut);
  await truncate(cutAt.file, cutAt.dataOffset + data.length - 10);
  await assert.rejects(store.read(cut), code('CHECKSUM_MISMATCH'));
  await assert.rejects(collect(store.readStream(cut, { pieceSize: 64 * 1024 })), code('CHECKSUM_MISMATCH'));

  // Damage is reported, not repaired here: the replica stays listed until the keeper decides.
  assert.ok(store.has(flipped));
  assert.equal(await store.quarantine(flipped), true);
  assert.equal(store.has(flipped), false);
  assert.equal((await readdir(join(dir, 'quarantine'))).length, 1);
  assert.equal(pool.stats().sessions, 0, 'aborted reads release their worker sessions');
});

test('open removes leftover temp files and quarantines damaged chunk files, listing neither', async (t) => {
  const dir = await tempDir(t);
  const first = await ChunkStore.open(dir, { pool });
  const good = newId();
  const data = Buffer.from('a good chunk');
  await put(first, good, data);
  await first.close();

  // What a kill -9 mid-write leaves, and what a damaged disk might.
  await writeFile(join(dir, 'tmp', `${newId()}.1234abcd`), 'half a chunk');
  await writeFile(join(dir, 'tmp', 'junk'), '');
  const truncated = newId();
  const header = encodeChunkHeader({ id: truncated, size: 1000, created: Date.now(), sha256: sha(Buffer.alloc(1000)) });
  await writeFile(join(dir, 'chunks', truncated.slice(0, 2), truncated), Buffer.concat([header, Buffer.alloc(10)]));
  const garbage = newId();
  await writeFile(join(dir, 'chunks', garbage.slice(0, 2), garbage), randomBytes(500));
  const renamed = newId();
  await writeFile(
    join(dir, 'chunks', renamed.slice(0, 2), renamed),
    Buffer.concat([encodeChunkHeader({ id: good, size: data.length, created: 1, sha256: sha(data) }), data]),
  );
  await writeFile(join(dir, 'chunks', '00', 'README'), 'not a chunk');

  const store = await openStore(t, dir);
  assert.equal(store.report.removedTemp, 2);
  assert.deepEqual(await readdir(join(dir, 'tmp')), []);
  assert.deepEqual(store.list().map((c) => c.id), [good]);
  assert.deepEqual(
    store.report.quarantined.map((q) => q.name.slice(3)).sort(),
    [truncated, garbage, renamed].sort(),
  );
  assert.match(store.report.quarantined.find((q) => q.name.endsWith(truncated))!.reason, /header says/);
  assert.match(store.report.quarantined.find((q) => q.name.endsWith(renamed))!.reason, /header names chunk/);
  assert.deepEqual(store.report.ignored, ['00/README']);
  assert.equal((await readdir(join(dir, 'quarantine'))).length, 3);
  assert.deepEqual((await store.read(good)).data, data);
});

test('a keeper killed with SIGKILL in the middle of a write reopens clean, its stale lock taken over', async (t) => {
  const dir = await tempDir(t);
  const id = newId();
  const script = join(dir, 'victim.mts');
  await writeFile(
    script,
    `import { WorkerPool } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src/workers/pool.ts')).href)};
     import { ChunkStore } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src/keeper/chunk-store.ts')).href)};
     const store = await ChunkStore.open(${JSON.stringify(join(dir, 'data'))}, { pool: new WorkerPool({ size: 1 }) });
     const w = await store.createWriter(${JSON.stringify(id)}, 1 << 20, ${JSON.stringify(sha(Buffer.alloc(1 << 20)))});
     await w.write(Buffer.alloc(1 << 19));
     console.log('half written');
     setInterval(() => {}, 1000);`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('half written') && resolve());
    child.on('exit', (c) => reject(new Error(`victim exited early with ${c}`)));
  });
  const gone = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGKILL');
  await gone;
  assert.equal((await readdir(join(dir, 'data', 'tmp'))).length, 1, 'the half-written temp file is there');
  assert.match(await readFile(join(dir, 'data', 'LOCK'), 'utf8'), new RegExp(`^${child.pid}\\n`));

  const store = await openStore(t, join(dir, 'data'));
  assert.equal(store.report.removedTemp, 1);
  assert.equal(store.has(id), false);
  assert.equal(store.count(), 0);
  assert.match(await readFile(join(dir, 'data', 'LOCK'), 'utf8'), new RegExp(`^${process.pid}\\n`));
});

test(`kill -9 at any instant of writes, deletes and quarantines never leaves a file in chunks/ that is not a whole chunk (seed ${SEED})`, async (t) => {
  // Chunks appear only by renaming a complete, fsynced temp file, and leave only by rename or unlink:
  // if that ever stopped being true, a restart would list (and report to the master) a torn chunk.
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  const script = join(dir, 'churn.mts');
  await writeFile(
    script,
    `import { createHash, randomBytes } from 'node:crypto';
     import { WorkerPool } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src/workers/pool.ts')).href)};
     import { ChunkStore } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src/keeper/chunk-store.ts')).href)};
     const store = await ChunkStore.open(${JSON.stringify(data)}, { pool: new WorkerPool({ size: 2 }) });
     console.log('running');
     const sizes = [0, 1, 4096, 300_000, 2_000_000];
     for (let i = 0; ; i++) {
       const bytes = randomBytes(sizes[i % sizes.length]);
       const id = randomBytes(16).toString('hex');
       const w = await store.createWriter(id, bytes.length, createHash('sha256').update(bytes).digest('hex'));
       for (let at = 0; at < bytes.length; at += 65536) await w.write(bytes.subarray(at, at + 65536));
       await w.commit();
       const held = store.list();
       if (i % 3 === 1) await store.delete(held[i % held.length].id);
       if (i % 7 === 3) await store.quarantine(held[i % held.length].id);
     }`,
  );
  const r = rng(SEED);
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('running') && resolve());
      child.on('exit', (c) => reject(new Error(`churn exited early with ${c}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, r.int(20, 600)));
    child.kill('SIGKILL');
    await exited;
  }
  const store = await openStore(t, data);
  assert.deepEqual(store.report.quarantined, [], 'no torn or foreign file under an id in chunks/');
  assert.deepEqual(store.report.ignored, []);
  assert.deepEqual(store.report.unreadable, []);
  assert.deepEqual(await readdir(join(data, 'tmp')), []);
  assert.ok(store.count() > 0, 'the churn got some chunks written');
  for (const c of store.list()) await store.verify(c.id);
});

test('chunk ids that are not 32 lowercase hex digits are refused with INVALID_ARGUMENT, before any path is built', async (t) => {
  const store = await openStore(t, await tempDir(t));
  const data = Buffer.from('x');
  for (const bad of ['../../../../etc/passwd', 'ab/cd', newId().toUpperCase(), newId().slice(1), `${newId()}0`, '', `${newId().slice(2)}..`]) {
    await assert.rejects(store.createWriter(bad, 1, sha(data)), code('INVALID_ARGUMENT'), bad);
    await assert.rejects(store.read(bad), code('INVALID_ARGUMENT'), bad);
    await assert.rejects(store.delete(bad), code('INVALID_ARGUMENT'), bad);
    assert.throws(() => store.has(bad), code('INVALID_ARGUMENT'), bad);
    await assert.rejects(collect(store.readStream(bad)), code('INVALID_ARGUMENT'), bad);
  }
  await assert.rejects(store.createWriter(newId(), 1, 'not a hash'), code('INVALID_ARGUMENT'));
  await assert.rejects(store.createWriter(newId(), -1, sha(data)), code('INVALID_ARGUMENT'));
  await assert.rejects(store.createWriter(newId(), 64 * 1024 * 1024 + 1, sha(data)), code('INVALID_ARGUMENT'));
  await assert.rejects(store.read(newId()), code('NOT_FOUND'));
});

test('a data directory in use is refused with a clear error: by this process, or by another live one', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  await assert.rejects(ChunkStore.open(dir, { pool }), (e: DfsError) => e.code === 'UNAVAILABLE' && /already open in this process/.test(e.message));
  await store.close();

  // A lock naming a live process (the one that started this test) belongs to another keeper.
  await writeFile(join(dir, 'LOCK'), `${process.ppid}\nother-host\n2024-01-01T00:00:00.000Z\n`);
  await assert.rejects(
    ChunkStore.open(dir, { pool }),
    (e: DfsError) =>
      e.code === 'UNAVAILABLE' && !e.retriable && e.message.includes(`locked by process ${process.ppid}`) && e.message.includes('LOCK'),
  );
  assert.match(await readFile(join(dir, 'LOCK'), 'utf8'), /other-host/, 'a refused open leaves the owner alone');

  await rm(join(dir, 'LOCK'));
  const reopened = await openStore(t, dir);
  await reopened.close();
  await assert.rejects(readFile(join(dir, 'LOCK')), /ENOENT/, 'close releases the lock');
});

test('writes beyond the capacity are refused with NO_SPACE, counting writes still in progress', async (t) => {
  const store = await openStore(t, await tempDir(t), { capacity: 1000 });
  const a = Buffer.alloc(600, 1);
  const b = Buffer.alloc(600, 2);
  const wa = await store.createWriter(newId(), a.length, sha(a));
  await assert.rejects(store.createWriter(newId(), b.length, sha(b)), (e: DfsError) => e.code === 'NO_SPACE' && /600 reserved/.test(e.message));
  await wa.abort();
  assert.equal(store.reserved(), 0);
  await put(store, newId(), a);
  await assert.rejects(store.createWriter(newId(), 401, sha(Buffer.alloc(401))), code('NO_SPACE'));
  await put(store, newId(), Buffer.alloc(400, 3));
  assert.equal(store.used(), 1000);
  const victim = store.list()[0]!;
  assert.equal(await store.delete(victim.id), true);
  assert.equal(await store.delete(victim.id), false, 'deleting twice is harmless');
  assert.equal(store.has(victim.id), false);
  assert.equal(store.used(), 1000 - victim.size, 'a delete frees its space');
  await put(store, newId(), Buffer.alloc(victim.size, 4));
});

test('a disk that fills up mid-chunk fails the write with NO_SPACE and removes the temp file', async (t) => {
  // A pool whose writes fail with ENOSPC after the first 100 kB, as a full disk would.
  class FullDisk extends WorkerPool {
    override async openFileWriter(path: string, opts?: { prefix?: Uint8Array }): Promise<FileWriteSession> {
      const s = await super.openFileWriter(path, opts);
      const write = s.write.bind(s);
      s.write = async (data, o) => {
        await write(data, o);
        if (s.bytes > 100_000) throw fsError({ message: 'ENOSPC: no space left on device, write', code: 'ENOSPC' }, `write ${path}`);
      };
      return s;
    }
  }
  const full = new FullDisk({ size: 1 });
  t.after(() => full.close());
  const dir = await tempDir(t);
  const diskErrors: string[] = [];
  const store = await ChunkStore.open(dir, { pool: full, onDiskError: (e) => diskErrors.push(e.code) });
  t.after(() => store.close());
  const data = rng(SEED).bytes(300_000);
  const w = await store.createWriter(newId(), data.length, sha(data));
  await w.write(data.subarray(0, 60_000));
  await assert.rejects(w.write(data.subarray(60_000, 120_000)), (e: DfsError) => e.code === 'NO_SPACE' && /ENOSPC/.test(e.message) && e.message.includes(w.id));
  await assert.rejects(w.commit(), code('NO_SPACE'));
  assert.deepEqual(await readdir(join(dir, 'tmp')), []);
  assert.equal(store.reserved(), 0);
  assert.equal(store.has(w.id), false);
  assert.deepEqual(diskErrors, ['NO_SPACE'], 'the keeper hears of the full disk once');
});

test('rewriting a stored chunk succeeds if identical (a retry) and is ALREADY_EXISTS otherwise', async (t) => {
  const store = await openStore(t, await tempDir(t));
  const data = rng(SEED).bytes(50_000);
  const id = newId();
  await put(store, id, data);

  const retry = await store.createWriter(id, data.length, sha(data));
  assert.equal(retry.alreadyStored, true);
  await retry.write(data);
  await retry.commit();
  assert.equal(store.count(), 1);
  assert.equal(store.used(), data.length);

  await assert.rejects(store.createWriter(id, data.length, sha(Buffer.alloc(1))), (e: DfsError) => e.code === 'ALREADY_EXISTS' && !e.retriable);

  const other = newId();
  const first = await store.createWriter(other, data.length, sha(data));
  await assert.rejects(store.createWriter(other, data.length, sha(data)), (e: DfsError) => e.code === 'ALREADY_EXISTS' && e.retriable);
  await first.write(data);
  await first.commit();
  assert.deepEqual((await store.read(other)).data, data);
});

test('closing a store aborts writes in progress; a closed store refuses work with UNAVAILABLE', async (t) => {
  const dir = await tempDir(t);
  const store = await ChunkStore.open(dir, { pool });
  const w = await store.createWriter(newId(), 10, sha(Buffer.alloc(10)));
  await w.write(Buffer.alloc(5));
  await store.close();
  assert.deepEqual(await readdir(join(dir, 'tmp')), []);
  await assert.rejects(w.write(Buffer.alloc(5)), code('INVALID_ARGUMENT'));
  await assert.rejects(store.read(newId()), code('UNAVAILABLE'));
  await assert.rejects(store.createWriter(newId(), 1, sha(Buffer.alloc(1))), code('UNAVAILABLE'));
});

test('verify re-hashes a stored chunk in the workers: damage, a grown or a vanished file is found, and the caller decides', async (t) => {
  // The scrubber and VERIFY tasks rely on this to find damage that no client read has hit yet.
  const lost: string[] = [];
  const dir = await tempDir(t);
  const store = await openStore(t, dir, { onLost: (id) => lost.push(id) });
  const r = rng(SEED);
  const [good, flipped, grown, gone] = [newId(), newId(), newId(), newId()];
  for (const id of [good, flipped, grown, gone]) await put(store, id, r.bytes(700_000), r);
  let paced = 0;
  await store.verify(good, { pieceSize: 100_000, pace: async (n) => { paced += n; } });
  assert.equal(paced, 700_000, 'every byte went through pace');

  const fh = await open(store._path(flipped), 'r+');
  await fh.write(Buffer.from([1]), 0, 1, CHUNK_HEADER_SIZE + 654_321);
  await fh.close();
  await assert.rejects(store.verify(flipped), (e: DfsError) => e.code === 'CHECKSUM_MISMATCH' && e.message.includes(flipped));
  assert.ok(store.has(flipped), 'damage is reported, the replica stays listed until the keeper decides');

  await writeFile(store._path(grown), Buffer.from('tail'), { flag: 'a' });
  await assert.rejects(store.verify(grown), (e: DfsError) => e.code === 'CHECKSUM_MISMATCH' && /file is \d+ bytes/.test(e.message));

  await rm(store._path(gone));
  await assert.rejects(store.verify(gone), code('NOT_FOUND'));
  assert.equal(store.has(gone), false);
  assert.deepEqual(lost, [gone]);
  await assert.rejects(store.verify(newId()), code('NOT_FOUND'));
  assert.equal(pool.stats().sessions, 0);
});

test('a write larger than the free disk space is refused with NO_SPACE before a byte is written', async (t) => {
  const diskErrors: string[] = [];
  let free = 10_000;
  const store = await openStore(t, await tempDir(t), { diskFree: () => free, onDiskError: (e) => diskErrors.push(e.code) });
  const small = Buffer.alloc(5_000, 7);
  await put(store, newId(), small);
  await assert.rejects(store.createWriter(newId(), 20_000, sha(Buffer.alloc(20_000))),
    (e: DfsError) => e.code === 'NO_SPACE' && /disk has 10000 bytes free/.test(e.message));
  assert.equal(store.reserved(), 0);
  free = 1e9;
  await put(store, newId(), Buffer.alloc(20_000, 1));
  assert.deepEqual(diskErrors, [], 'refusing early is not a disk error');
});
