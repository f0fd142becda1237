// Small chunks in pack files: appended together, made durable together, and after a reopen listed
// exactly as they were: deletions stay deleted, a torn tail is cut off, damage inside a pack costs
// only the damaged record, and a pack with nothing live left is deleted.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdir, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DfsError } from '../src/wire/errors.js';
import { WorkerPool } from '../src/workers/index.js';
import { ChunkStore, type ChunkStoreOptions } from '../src/keeper/chunk-store.js';
import { CHUNK_HEADER_SIZE } from '../src/keeper/chunk-header.js';
import { tempDir, type Cleanup } from './helpers/keeper-fixtures.js';
import { storedReplica, storedReplicas } from './helpers/stored-replicas.js';

const pool = new WorkerPool({ size: 2 });
after(() => pool.close());

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const newId = () => randomBytes(16).toString('hex');

async function openStore(t: Cleanup, dir: string, opts: Partial<ChunkStoreOptions> = {}): Promise<ChunkStore> {
  const store = await ChunkStore.open(dir, { pool, ...opts });
  t.after(() => store.close());
  return store;
}

async function put(store: ChunkStore, id: string, data: Buffer): Promise<void> {
  const w = await store.createWriter(id, data.length, sha(data));
  await w.write(data);
  await w.commit();
}

async function packFiles(dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'packs'))).filter((n) => n.endsWith('.pack')).sort();
}

test('small chunks written at once share one pack; big ones get files; all read back verified after a reopen', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const small = Array.from({ length: 40 }, (_, i) => ({ id: newId(), data: randomBytes(i * 1000) }));
  const big = { id: newId(), data: randomBytes(store.packMax + 1) };
  await Promise.all([...small, big].map((c) => put(store, c.id, c.data)));
  assert.deepEqual((await packFiles(dir)).length, 1, 'one pack for every small chunk');
  const onDisk = await storedReplicas(dir);
  assert.equal(onDisk.filter((r) => r.packed).length, small.length);
  assert.deepEqual(onDisk.filter((r) => !r.packed).map((r) => r.id), [big.id]);

  await store.close();
  const again = await openStore(t, dir);
  assert.equal(again.count(), small.length + 1);
  for (const c of [...small, big]) {
    assert.deepEqual((await again.read(c.id)).data, c.data);
    await again.verify(c.id);
  }
  assert.equal(again.used(), small.reduce((n, c) => n + c.data.length, big.data.length));
});

test('packMax 0 gives every chunk a file; packMax above 256 KiB is refused', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir, { packMax: 0 });
  await put(store, newId(), randomBytes(10));
  assert.deepEqual(await packFiles(dir), []);
  await assert.rejects(ChunkStore.open(await tempDir(t), { pool, packMax: 256 * 1024 + 1 }),
    (e: DfsError) => e.code === 'INVALID_ARGUMENT' && /packMax/.test(e.message));
});

test('deleted and quarantined packed chunks stay gone after a reopen; a rewrite of the same id survives', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const chunks = Array.from({ length: 6 }, () => ({ id: newId(), data: randomBytes(3000) }));
  for (const c of chunks) await put(store, c.id, c.data);
  assert.equal(await store.delete(chunks[0]!.id), true);
  assert.equal(await store.quarantine(chunks[1]!.id), true);
  assert.equal(await store.delete(chunks[2]!.id), true);
  await put(store, chunks[2]!.id, chunks[2]!.data); // written again, after its deletion
  const quarantined = await readdir(join(dir, 'quarantine'));
  assert.equal(quarantined.length, 1);
  assert.ok(quarantined[0]!.startsWith(chunks[1]!.id));
  assert.equal((await stat(join(dir, 'quarantine', quarantined[0]!))).size, CHUNK_HEADER_SIZE + 3000, 'the damaged record is kept whole');

  await store.close();
  const again = await openStore(t, dir);
  assert.deepEqual(again.list().map((c) => c.id).sort(), chunks.slice(2).map((c) => c.id).sort());
  assert.deepEqual((await again.read(chunks[2]!.id)).data, chunks[2]!.data);
});

test('a pack whose every record is deleted is removed from disk once no longer appended to', async (t) => {
  const dir = await tempDir(t);
  // A tiny target: every batch starts a new pack, sealing the one before.
  const store = await openStore(t, dir, { packTarget: 1 });
  const a = { id: newId(), data: randomBytes(100) };
  const b = { id: newId(), data: randomBytes(100) };
  await put(store, a.id, a.data);
  await put(store, b.id, b.data);
  assert.equal((await packFiles(dir)).length, 2);
  await store.delete(a.id);
  assert.equal((await packFiles(dir)).length, 1, 'the sealed pack of a is deleted with its last record');
  assert.deepEqual((await readdir(join(dir, 'packs'))).filter((n) => n.endsWith('.deleted')), []);
  await store.delete(b.id); // the pack being appended to stays
  await store.close();
  const again = await openStore(t, dir);
  assert.equal(again.count(), 0);
  assert.deepEqual(await readdir(join(dir, 'packs')), [], 'reopened, a pack with nothing live is deleted');
});

test('a torn tail is cut off and kept in quarantine; the records before it and new writes are intact', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const chunks = Array.from({ length: 5 }, () => ({ id: newId(), data: randomBytes(2000) }));
  for (const c of chunks) await put(store, c.id, c.data);
  await store.close();
  const [pack] = await packFiles(dir);
  const path = join(dir, 'packs', pack!);
  const whole = (await stat(path)).size;
  // What a crash in the middle of a batch leaves: the start of a record, never acknowledged.
  const next = await readFile(path);
  await appendFile(path, next.subarray(0, CHUNK_HEADER_SIZE + 700));

  const again = await openStore(t, dir);
  assert.deepEqual(again.list().map((c) => c.id).sort(), chunks.map((c) => c.id).sort());
  assert.equal((await stat(path)).size, whole, 'the torn tail is cut off');
  assert.equal(again.report.quarantined.length, 1);
  assert.match(again.report.quarantined[0]!.reason, /runs past the end/);
  assert.equal((await readdir(join(dir, 'quarantine'))).length, 1);
  const more = { id: newId(), data: randomBytes(500) };
  await put(again, more.id, more.data);
  for (const c of [...chunks, more]) assert.deepEqual((await again.read(c.id)).data, c.data);
});

test('a damaged header inside a pack loses only its record: the scan finds the next one', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const chunks = Array.from({ length: 5 }, () => ({ id: newId(), data: randomBytes(1500) }));
  for (const c of chunks) await put(store, c.id, c.data);
  const victim = await storedReplica(dir, chunks[2]!.id);
  await store.close();
  const fh = await open(victim.file, 'r+');
  await fh.write(Buffer.from('XXXX'), 0, 4, victim.dataOffset - CHUNK_HEADER_SIZE + 30); // inside the header
  await fh.close();

  const again = await openStore(t, dir);
  const expected = chunks.filter((_, i) => i !== 2).map((c) => c.id).sort();
  assert.deepEqual(again.list().map((c) => c.id).sort(), expected);
  assert.equal(again.report.quarantined.length, 1);
  assert.match(again.report.quarantined[0]!.reason, /header check failed/);
  for (const c of chunks) if (c !== chunks[2]) assert.deepEqual((await again.read(c.id)).data, c.data);
});

test('damaged data in a pack fails its read and its verify with CHECKSUM_MISMATCH; neighbours are unaffected', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const chunks = Array.from({ length: 3 }, () => ({ id: newId(), data: randomBytes(4096) }));
  for (const c of chunks) await put(store, c.id, c.data);
  const victim = await storedReplica(dir, chunks[1]!.id);
  const fh = await open(victim.file, 'r+');
  await fh.write(Buffer.from([0xff ^ chunks[1]!.data[100]!]), 0, 1, victim.dataOffset + 100);
  await fh.close();
  await assert.rejects(store.read(chunks[1]!.id), (e: DfsError) => e.code === 'CHECKSUM_MISMATCH');
  await assert.rejects(store.verify(chunks[1]!.id), (e: DfsError) => e.code === 'CHECKSUM_MISMATCH');
  assert.ok(store.has(chunks[1]!.id), 'what to do about damage is the keeper\'s decision');
  for (const i of [0, 2]) assert.deepEqual((await store.read(chunks[i]!.id)).data, chunks[i]!.data);
});

test('the same chunk in two packs (a lost deletion of a copy) is listed once, and the extra copy is marked dead', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir, { packTarget: 1 });
  const c = { id: newId(), data: randomBytes(800) };
  await put(store, c.id, c.data);
  const first = await storedReplica(dir, c.id);
  await store.close();
  // A second pack holding the same record, as if an older copy's deletion had been lost.
  const record = (await readFile(first.file)).subarray(first.dataOffset - CHUNK_HEADER_SIZE, first.dataOffset + c.data.length);
  await writeFile(join(dir, 'packs', '00000000000000ff.pack'), record);

  const again = await openStore(t, dir);
  assert.equal(again.count(), 1);
  assert.equal(again.used(), c.data.length);
  assert.deepEqual((await again.read(c.id)).data, c.data);
  await again.close();
  assert.equal((await storedReplicas(dir)).length, 1, 'only one copy is live on disk');
});

test('compaction moves the live records of a mostly dead pack, frees its space, and the result survives a reopen', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir, { packTarget: 1 });
  const chunks = Array.from({ length: 10 }, () => ({ id: newId(), data: randomBytes(2000) }));
  await Promise.all(chunks.map((c) => put(store, c.id, c.data))); // one batch: one pack
  const last = { id: newId(), data: randomBytes(100) };
  await put(store, last.id, last.data); // a new pack; the first is sealed
  const [first] = await packFiles(dir);
  assert.equal(await store.compactPacks(), 0, 'nothing dead yet: nothing to do');
  for (const c of chunks.slice(0, 6)) await store.delete(c.id);
  const before = (await stat(join(dir, 'packs', first!))).size;

  const freed = await store.compactPacks();
  assert.equal(freed, before - 4 * (CHUNK_HEADER_SIZE + 2000));
  assert.ok(!(await packFiles(dir)).includes(first!), 'the compacted pack is deleted');
  const live = [...chunks.slice(6), last];
  for (const c of live) assert.deepEqual((await store.read(c.id)).data, c.data);
  assert.equal(store.used(), 4 * 2000 + 100);

  await store.close();
  const again = await openStore(t, dir);
  assert.deepEqual(again.list().map((c) => c.id).sort(), live.map((c) => c.id).sort());
  for (const c of live) assert.deepEqual((await again.read(c.id)).data, c.data);
  assert.equal((await storedReplicas(dir)).length, live.length, 'each live chunk once on disk');
});

test('compaction quarantines a damaged record instead of copying it, and a chunk deleted meanwhile stays deleted', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir, { packTarget: 1 });
  const chunks = Array.from({ length: 6 }, () => ({ id: newId(), data: randomBytes(1000) }));
  await Promise.all(chunks.map((c) => put(store, c.id, c.data)));
  await put(store, newId(), randomBytes(10));
  for (const c of chunks.slice(0, 3)) await store.delete(c.id);
  const victim = await storedReplica(dir, chunks[3]!.id);
  const fh = await open(victim.file, 'r+');
  await fh.write(Buffer.from([0xff ^ chunks[3]!.data[5]!]), 0, 1, victim.dataOffset + 5);
  await fh.close();

  const [freed] = await Promise.all([store.compactPacks(), store.delete(chunks[5]!.id)]);
  assert.ok(freed > 0);
  assert.equal(store.has(chunks[3]!.id), false, 'the damaged copy is not carried over');
  assert.ok((await readdir(join(dir, 'quarantine'))).some((n) => n.startsWith(chunks[3]!.id)));
  assert.equal(store.has(chunks[5]!.id), false);
  assert.deepEqual((await store.read(chunks[4]!.id)).data, chunks[4]!.data);
  await store.close();
  const again = await openStore(t, dir);
  assert.equal(again.has(chunks[5]!.id), false, 'deleted during compaction, still deleted after a reopen');
  assert.equal(again.has(chunks[3]!.id), false);
  assert.deepEqual((await again.read(chunks[4]!.id)).data, chunks[4]!.data);
});

test('a torn or zero-filled entry of a dead list deletes nothing, and later deletions still count', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const [a, b, c, d] = Array.from({ length: 4 }, () => ({ id: newId(), data: randomBytes(1000) }));
  for (const x of [a!, b!, c!, d!]) await put(store, x.id, x.data); // one pack; a is at offset 0
  await store.delete(b!.id);
  await store.close();
  const deadList = join(dir, 'packs', (await readdir(join(dir, 'packs'))).find((n) => n.endsWith('.deleted'))!);
  await truncate(deadList, 3); // a power loss tore the entry of b
  const s2 = await openStore(t, dir);
  assert.ok(s2.has(a!.id) && s2.has(b!.id) && s2.has(c!.id), 'the torn deletion is lost, nothing else');
  await s2.delete(c!.id);
  await s2.close();
  await appendFile(deadList, Buffer.alloc(16)); // an append whose data never reached the disk
  const s3 = await openStore(t, dir);
  assert.ok(s3.has(a!.id), 'the chunk at offset 0 was never deleted');
  assert.equal(s3.has(c!.id), false, 'the deletion after the torn entry holds');
  assert.deepEqual((await s3.read(a!.id)).data, a!.data);
});

test('a lost deletion of a damaged copy brings it back beside the rewrite: the newer, good copy is kept', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir, { packTarget: 1 });
  const x = { id: newId(), data: randomBytes(1000) };
  const y = { id: newId(), data: randomBytes(1000) };
  await Promise.all([put(store, x.id, x.data), put(store, y.id, y.data)]); // one batch: pack 1
  const r = await storedReplica(dir, x.id);
  const fh = await open(r.file, 'r+');
  await fh.write(Buffer.from([x.data[7]! ^ 0xff]), 0, 1, r.dataOffset + 7);
  await fh.close();
  await store.quarantine(x.id);
  await new Promise((resolve) => setTimeout(resolve, 5)); // a later creation time for the rewrite
  await put(store, x.id, x.data); // the repair's rewrite, to pack 2
  await store.close();
  await rm(join(dir, 'packs', '0000000000000001.deleted')); // the unsynced quarantine entry is lost
  const again = await openStore(t, dir);
  assert.deepEqual((await again.read(x.id)).data, x.data);
  assert.deepEqual((await again.read(y.id)).data, y.data);
});

test('a pack that cannot be removed fails nothing else: appends go on and settle', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir, { packTarget: 1 });
  const x = { id: newId(), data: randomBytes(100) };
  await put(store, x.id, x.data);
  await store.delete(x.id); // the pack being appended to, now empty, stays until sealed
  const p = join(dir, 'packs', '0000000000000001.pack');
  await rm(p);
  await mkdir(p); // stands in for a disk that refuses the unlink
  const y = { id: newId(), data: randomBytes(100) };
  await put(store, y.id, y.data);
  assert.deepEqual((await store.read(y.id)).data, y.data);
  await rm(p, { recursive: true });
});

test('compaction seals the pack taking appends once it is mostly dead, so a quiet keeper frees it long before its target size', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir); // the default 64 MiB target: this pack would never fill
  const chunks = Array.from({ length: 10 }, () => ({ id: newId(), data: randomBytes(3000) }));
  await Promise.all(chunks.map((c) => put(store, c.id, c.data)));
  const [first] = await packFiles(dir);
  assert.equal(await store.compactPacks(), 0, 'nothing dead: the pack keeps taking appends');
  assert.deepEqual(await packFiles(dir), [first]);
  for (const c of chunks.slice(0, 7)) await store.delete(c.id);
  assert.ok((await store.compactPacks()) > 0);
  assert.ok(!(await packFiles(dir)).includes(first!), 'the mostly dead pack is gone');
  for (const c of chunks.slice(7)) assert.deepEqual((await store.read(c.id)).data, c.data);
  for (const c of chunks.slice(7)) await store.delete(c.id);
  await store.compactPacks();
  assert.deepEqual(await packFiles(dir), [], 'a pack with nothing live is removed without waiting for a restart');
  const later = { id: newId(), data: randomBytes(500) };
  await put(store, later.id, later.data);
  assert.deepEqual((await store.read(later.id)).data, later.data);
});

test('compaction waits while the disk has no room for the copies beside the pack they leave', async (t) => {
  const dir = await tempDir(t);
  let free = 1e12;
  const store = await openStore(t, dir, { packTarget: 1, diskFree: () => free });
  const chunks = Array.from({ length: 6 }, () => ({ id: newId(), data: randomBytes(2000) }));
  await Promise.all(chunks.map((c) => put(store, c.id, c.data)));
  await put(store, newId(), randomBytes(10)); // seals the first pack
  const [first] = await packFiles(dir);
  for (const c of chunks.slice(0, 4)) await store.delete(c.id);
  free = 2 * (CHUNK_HEADER_SIZE + 2000) - 1; // one byte short of the two live records
  assert.equal(await store.compactPacks(), 0);
  assert.ok((await packFiles(dir)).includes(first!), 'not compacted while the copies would not fit');
  free = 1e12;
  assert.ok((await store.compactPacks()) > 0);
  assert.ok(!(await packFiles(dir)).includes(first!));
  for (const c of chunks.slice(4)) assert.deepEqual((await store.read(c.id)).data, c.data);
});

test('a pack file that could not be created (the name was taken) is never deleted, and appends go on in the next pack', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir, { packTarget: 1 });
  const a = { id: newId(), data: randomBytes(100) };
  await put(store, a.id, a.data); // pack 1
  const foreign = join(dir, 'packs', '0000000000000002.pack');
  await writeFile(foreign, 'not a pack of this store');
  const b = { id: newId(), data: randomBytes(100) };
  await assert.rejects(put(store, b.id, b.data), DfsError);
  const c = { id: newId(), data: randomBytes(100) };
  await put(store, c.id, c.data); // pack 3
  await store.delete(a.id);
  await store.compactPacks();
  assert.equal(await readFile(foreign, 'utf8'), 'not a pack of this store', 'the file that was in the way is untouched');
  assert.deepEqual((await store.read(c.id)).data, c.data);
  assert.equal(store.has(b.id), false);
});

test('the same chunk quarantined twice in quick succession leaves two copies in quarantine', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const x = { id: newId(), data: randomBytes(100) };
  await put(store, x.id, x.data);
  t.mock.method(Date, 'now', () => 1_800_000_000_000); // both in the same millisecond
  assert.equal(await store.quarantine(x.id), true);
  await put(store, x.id, x.data);
  assert.equal(await store.quarantine(x.id), true);
  t.mock.restoreAll();
  assert.equal((await readdir(join(dir, 'quarantine'))).filter((n) => n.startsWith(x.id)).length, 2);
});

test('a dead list of the first pack format (offsets alone) is still honoured, and goes with its pack', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const chunks = Array.from({ length: 3 }, () => ({ id: newId(), data: randomBytes(700) }));
  for (const c of chunks) await put(store, c.id, c.data);
  const offsetOf = async (id: string) => (await storedReplica(dir, id)).dataOffset - CHUNK_HEADER_SIZE;
  const [pack] = await packFiles(dir);
  await store.close();
  // As the first version wrote it: 8-byte offsets, here of the second record, and a torn entry after.
  const legacy = Buffer.alloc(8 + 3);
  legacy.writeBigUInt64BE(BigInt(await offsetOf(chunks[1]!.id)));
  await writeFile(join(dir, 'packs', pack!.replace(/\.pack$/, '.dead')), legacy);

  const again = await openStore(t, dir);
  assert.deepEqual(again.list().map((c) => c.id).sort(), [chunks[0]!.id, chunks[2]!.id].sort());
  await again.delete(chunks[2]!.id);
  await again.close();
  const third = await openStore(t, dir);
  assert.deepEqual(third.list().map((c) => c.id), [chunks[0]!.id]);
  assert.deepEqual((await third.read(chunks[0]!.id)).data, chunks[0]!.data);
  await third.delete(chunks[0]!.id); // the last live record of a sealed pack: the pack and both lists go
  assert.deepEqual(await readdir(join(dir, 'packs')), []);
});

test('a new pack whose first batch fails after the file was made is removed: a reopen lists none of the refused chunks', async (t) => {
  const dir = await tempDir(t);
  let failNext = false;
  // The write lands, then the disk reports an error (a failed fdatasync, say): nothing was acknowledged.
  const flaky = new Proxy(pool, {
    get(target, key) {
      if (key !== 'writeAt') return Reflect.get(target, key, target);
      return async (...args: Parameters<WorkerPool['writeAt']>) => {
        await target.writeAt(...args);
        if (failNext) {
          failNext = false;
          throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        }
      };
    },
  });
  const store = await openStore(t, dir, { pool: flaky, packTarget: 1 });
  const kept = { id: newId(), data: randomBytes(300) };
  await put(store, kept.id, kept.data);
  failNext = true;
  const refused = { id: newId(), data: randomBytes(300) };
  await assert.rejects(put(store, refused.id, refused.data), (e: DfsError) => e.code === 'IO_ERROR');
  assert.deepEqual(await packFiles(dir), ['0000000000000001.pack'], 'the pack made for the refused batch is gone');
  const later = { id: newId(), data: randomBytes(300) };
  await put(store, later.id, later.data);
  await store.close();
  const again = await openStore(t, dir);
  assert.deepEqual(again.list().map((c) => c.id).sort(), [kept.id, later.id].sort());
});

test('closing the store during a compaction waits for it, and every live chunk is there once after a reopen', async (t) => {
  const dir = await tempDir(t);
  const store = await ChunkStore.open(dir, { pool, packTarget: 1 });
  const chunks = Array.from({ length: 40 }, () => ({ id: newId(), data: randomBytes(1500) }));
  await Promise.all(chunks.map((c) => put(store, c.id, c.data)));
  await put(store, newId(), randomBytes(10)); // seals the first pack
  for (const c of chunks.slice(0, 25)) await store.delete(c.id);
  const compaction = store.compactPacks();
  await store.close();
  await compaction;
  const again = await openStore(t, dir);
  const live = chunks.slice(25);
  for (const c of live) assert.deepEqual((await again.read(c.id)).data, c.data);
  const onDisk = (await storedReplicas(dir)).filter((r) => live.some((c) => c.id === r.id));
  assert.equal(onDisk.length, live.length, 'each live chunk once on disk');
});
