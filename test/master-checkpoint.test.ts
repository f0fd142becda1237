// Master checkpoints and journal segments on disk. A checkpoint replaces the journal the master
// replays at start, so these tests protect that nothing acknowledged is lost at any step of making
// one: the binary checkpoint restores the state exactly, damage is refused with the file's name,
// and every state a crash can leave between two steps starts up complete.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appendFile, copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointReader, writeCheckpointFile } from '../src/master/checkpoint-format.js';
import { MetadataStore, checkpointName, segmentName } from '../src/master/metadata-store.js';
import { MetadataState } from '../src/master/namespace.js';
import { seededRandom } from '../src/master/placement.js';
import type { Entry } from '../src/master/entries.js';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-ckpt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A data directory inside `dir`, so that copies of it can sit beside it. */
async function storeDir(dir: string): Promise<string> {
  await mkdir(join(dir, 'store'));
  return join(dir, 'store');
}

/**
 * A seeded stream of valid entries: keepers, directories, files of several chunks (some with more
 * replicas than fit inline), renames, removals, replica updates, pending and aborted uploads.
 */
function workload(seed: number) {
  const random = seededRandom(seed);
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join('');
  const keepers = ['k1', 'k2', 'k3', 'k4', 'k5'];
  const files: string[] = [];
  const chunks: string[] = [];
  let t = 1000;
  let n = 0;
  const next = (): Entry[] => {
    t++;
    n++;
    if (n <= keepers.length) {
      return [{ type: 'register-keeper', id: keepers[n - 1], address: `127.0.0.1:${7000 + n}`, zone: `z${n % 3}`, capacity: 1 << 30 }];
    }
    const dir = `/d${Math.floor(random() * 4)}/e${Math.floor(random() * 3)}`;
    const roll = random();
    if (roll < 0.55 || files.length === 0) {
      const path = `${dir}/f${n}`;
      const uploadId = hex(32);
      const count = 1 + Math.floor(random() * 3);
      const replicas = keepers.slice(0, random() < 0.2 ? 5 : 3);
      const ids = Array.from({ length: count }, () => hex(32));
      const size = (count - 1) * 1024 + 1 + Math.floor(random() * 1024);
      const out: Entry[] = [
        { type: 'mkdir', path: dir, parents: true, mtime: t },
        { type: 'begin-upload', uploadId, path, replication: 5, chunkSize: 1024, mtime: t },
        { type: 'allocate-chunks', uploadId, chunks: ids.map((id) => ({ id, replicas })), mtime: t },
      ];
      if (random() < 0.1) return out; // left pending
      if (random() < 0.05) return [...out, { type: 'abort-upload', uploadId, mtime: t }];
      files.push(path);
      chunks.push(...ids);
      return [...out, {
        type: 'commit-file', uploadId, path, size, mtime: t,
        chunks: ids.map((id, i) => ({ id, size: i < count - 1 ? 1024 : size - (count - 1) * 1024, sha256: hex(64), replicas })),
      }];
    }
    if (roll < 0.7) {
      const src = files.splice(Math.floor(random() * files.length), 1)[0];
      const dst = `${dir}/r${n}`;
      files.push(dst);
      return [{ type: 'mkdir', path: dir, parents: true, mtime: t }, { type: 'rename', src, dst, mtime: t }];
    }
    if (roll < 0.85) {
      const path = files.splice(Math.floor(random() * files.length), 1)[0];
      return [{ type: 'remove', path, recursive: false, mtime: t }];
    }
    const chunkId = chunks[Math.floor(random() * chunks.length)];
    return [{ type: 'update-replicas', chunkId, add: [keepers[Math.floor(random() * 5)]], remove: [keepers[Math.floor(random() * 5)]], mtime: t }];
  };
  return next;
}

/** Applies entries as the master does; entries refused by the state (a chunk removed since) are skipped. */
function applyAll(state: MetadataState, entries: Entry[], sink?: (e: Entry) => void): void {
  for (const e of entries) {
    try {
      state.apply(e);
    } catch {
      continue;
    }
    sink?.(e);
  }
}

const snap = (s: MetadataState) => JSON.stringify(s.snapshot());

test('a binary checkpoint restores the state exactly, and the restored state goes on identically', async (t) => {
  const dir = await tempDir(t);
  for (const seed of [1, 2, 3]) {
    const next = workload(seed);
    const a = new MetadataState();
    for (let i = 0; i < 300; i++) applyAll(a, next());
    const file = join(dir, `c${seed}`);
    writeCheckpointFile(file, (w) => a.writeCheckpoint(w));
    const b = MetadataState.readCheckpoint(CheckpointReader.open(file));
    assert.equal(snap(b), snap(a), `seed=${seed}`);
    assert.deepEqual(b.stats(), a.stats());
    for (const k of ['k1', 'k4', 'k5']) assert.deepEqual(new Set(b.chunksOnKeeper(k)), new Set(a.chunksOnKeeper(k)));
    for (let i = 0; i < 200; i++) {
      const entries = next();
      applyAll(a, entries);
      applyAll(b, entries);
    }
    assert.equal(snap(b), snap(a), `seed=${seed}, after more entries`);
  }
});

test('a checkpoint larger than the reader\'s window loads across every block boundary', async (t) => {
  const dir = await tempDir(t);
  const next = workload(5);
  const s = new MetadataState();
  for (let i = 0; i < 30_000; i++) applyAll(s, next());
  const file = join(dir, 'big');
  const bytes = writeCheckpointFile(file, (w) => s.writeCheckpoint(w));
  assert.ok(bytes > 1.5 * 1024 * 1024, `${bytes} bytes`);
  const r = CheckpointReader.open(file);
  const restored = MetadataState.readCheckpoint(r);
  r.close();
  assert.equal(snap(restored), snap(s));
});

test('a damaged or truncated checkpoint is refused, naming the file', async (t) => {
  const dir = await tempDir(t);
  const next = workload(7);
  const s = new MetadataState();
  for (let i = 0; i < 50; i++) applyAll(s, next());
  const file = join(dir, 'c');
  writeCheckpointFile(file, (w) => s.writeCheckpoint(w));
  const good = await readFile(file);
  const flipped = Buffer.from(good);
  flipped[Math.floor(good.length / 2)] ^= 0x20;
  await writeFile(file, flipped);
  assert.throws(() => CheckpointReader.open(file), (err: { code: string; message: string }) =>
    err.code === 'IO_ERROR' && err.message.includes(file) && /SHA-256/.test(err.message));
  await writeFile(file, good.subarray(0, good.length - 100));
  assert.throws(() => CheckpointReader.open(file), (err: { code: string; message: string }) =>
    err.code === 'IO_ERROR' && err.message.includes(file) && /truncated/.test(err.message));
});

/** A store fed `rounds` workload steps, as the master feeds it: apply, then journal. */
async function feed(store: MetadataStore, next: () => Entry[], rounds: number): Promise<void> {
  const pending: Promise<void>[] = [];
  for (let i = 0; i < rounds; i++) applyAll(store.state, next(), (e) => pending.push(store.append(e)));
  await Promise.all(pending);
}

async function open(dir: string, log: string[] = [], checkpointEntries = 1_000_000): Promise<MetadataStore> {
  return MetadataStore.open({ dir, checkpointEntries, log: (l) => log.push(l) });
}

test('checkpoints at the entry threshold drop older segments, and a restart finds the same state', async (t) => {
  const top = await tempDir(t);
  const dir = await storeDir(top);
  const store = await open(dir, [], 40);
  const next = workload(11);
  for (let i = 1; i <= 3; i++) {
    await feed(store, next, 20); // 40 entries or more
    for (let waited = 0; (store.lastCheckpoint?.seq ?? 0) < i; waited += 20) {
      assert.ok(waited < 20_000, `checkpoint ${i} was not made after the threshold was crossed`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const names = await readdir(dir);
  const ckpts = names.filter((n) => n.endsWith('.ckpt'));
  assert.equal(ckpts.length, 1, names.join(' '));
  const k = Number(ckpts[0].slice(11, 27));
  assert.equal(k, 3, names.join(' '));
  assert.ok(names.filter((n) => n.startsWith('journal-')).every((n) => Number(n.slice(8, 24)) >= k), names.join(' '));
  // A copy taken while the store runs is what a kill -9 would leave.
  const crashed = join(top, 'crash');
  await cp(dir, crashed, { recursive: true });
  const again = await open(crashed);
  assert.equal(snap(again.state), snap(store.state));
  await again.close();
  await store.close();
});

test('every state a crash can leave while checkpointing starts up with every entry', async (t) => {
  const top = await tempDir(t);
  const dir = await storeDir(top);
  const next = workload(21);
  // Before: checkpoint 1 and segment 1 with entries (a first checkpoint made, then more work).
  const store = await open(dir);
  await feed(store, next, 60);
  await store.checkpoint();
  await feed(store, next, 60);
  const before = join(top, 'before');
  await cp(dir, before, { recursive: true });
  // After: checkpoint 2 made, segment 2 holding later entries.
  await store.checkpoint();
  await feed(store, next, 60);
  const want = snap(store.state);
  const after = join(top, 'after');
  await cp(dir, after, { recursive: true });
  assert.deepEqual((await readdir(before)).sort(), [checkpointName(1), segmentName(1)]);
  assert.deepEqual((await readdir(after)).sort(), [checkpointName(2), segmentName(2)]);

  const states: Record<string, (d: string) => Promise<void>> = {
    // Step 1 done: segment 2 exists, no checkpoint 2 yet.
    'rotated, nothing written': async (d) => {
      await copyFile(join(before, segmentName(1)), join(d, segmentName(1)));
      await copyFile(join(before, checkpointName(1)), join(d, checkpointName(1)));
      await copyFile(join(after, segmentName(2)), join(d, segmentName(2)));
    },
    // Step 2 under way: a temporary checkpoint half written.
    'temporary checkpoint half written': async (d) => {
      await states['rotated, nothing written'](d);
      const full = await readFile(join(after, checkpointName(2)));
      await writeFile(join(d, `${checkpointName(2)}.tmp`), full.subarray(0, full.length >> 1));
    },
    // Step 2 done, step 3 not: a complete temporary checkpoint never renamed.
    'temporary checkpoint complete, not renamed': async (d) => {
      await states['rotated, nothing written'](d);
      await copyFile(join(after, checkpointName(2)), join(d, `${checkpointName(2)}.tmp`));
    },
    // Step 3 done: the new checkpoint is in place, the old files are not deleted yet.
    'renamed, old checkpoint and segment still there': async (d) => {
      await states['rotated, nothing written'](d);
      await copyFile(join(after, checkpointName(2)), join(d, checkpointName(2)));
    },
    // Step 4 half done: the old checkpoint deleted, its segment not.
    'old checkpoint deleted, old segment not': async (d) => {
      await copyFile(join(before, segmentName(1)), join(d, segmentName(1)));
      await copyFile(join(after, checkpointName(2)), join(d, checkpointName(2)));
      await copyFile(join(after, segmentName(2)), join(d, segmentName(2)));
    },
  };
  for (const [name, make] of Object.entries(states)) {
    const d = await mkdtemp(join(top, 'state-'));
    await make(d);
    const log: string[] = [];
    const s = await open(d, log);
    assert.equal(snap(s.state), want, name);
    // Leftovers are cleaned up: only the loaded checkpoint and the segments after it remain.
    const left = (await readdir(d)).sort();
    assert.ok(!left.some((n) => n.endsWith('.tmp')), `${name}: ${left.join(' ')}`);
    assert.ok(left.includes(segmentName(2)), `${name}: ${left.join(' ')}`);
    await s.close();
  }
  await store.close();
});

test('a damaged newest checkpoint falls back to an older complete chain, or stops the start naming the file', async (t) => {
  const top = await tempDir(t);
  const dir = await storeDir(top);
  const next = workload(31);
  const store = await open(dir);
  await feed(store, next, 40);
  await store.checkpoint();
  await feed(store, next, 40);
  const want = snap(store.state);
  const keep = join(top, 'keep');
  await cp(dir, keep, { recursive: true });
  await store.checkpoint();
  const second = await readFile(join(dir, checkpointName(2)));
  await feed(store, next, 10);
  await store.close();

  // Checkpoint 2 damaged, but checkpoint 1 and segments 1 and 2 are all there: fall back, say so.
  const d = join(top, 'fallback');
  await cp(keep, d, { recursive: true });
  const damaged = Buffer.from(second);
  damaged[40] ^= 1;
  await writeFile(join(d, checkpointName(2)), damaged);
  await writeFile(join(d, segmentName(2)), '');
  const log: string[] = [];
  const s = await open(d, log);
  assert.equal(snap(s.state), want);
  assert.ok(log.some((l) => l.includes(join(d, checkpointName(2))) && /damaged/.test(l)), log.join('\n'));
  await s.close();

  // The only checkpoint damaged and its segment 0 long deleted: the start stops, naming the file.
  const lone = join(top, 'lone');
  await cp(keep, lone, { recursive: true });
  const file = join(lone, checkpointName(1));
  const bytes = Buffer.from(await readFile(file));
  bytes[bytes.length - 1] ^= 1;
  await writeFile(file, bytes);
  await assert.rejects(open(lone), (err: { code: string; message: string }) =>
    err.code === 'IO_ERROR' && err.message.includes(file));
});

function journalLine(entry: Entry): string {
  const json = JSON.stringify(entry);
  return `${createHash('sha256').update(json).digest('hex').slice(0, 16)} ${json}\n`;
}

test('a torn tail of the newest segment is dropped; damage in a closed segment stops the start with file and offset', async (t) => {
  const top = await tempDir(t);
  const dir = await storeDir(top);
  const mk = (path: string): Entry => ({ type: 'mkdir', path, parents: false, mtime: 1 });
  // The single journal.log of earlier versions is read as segment 0.
  await writeFile(join(dir, 'journal.log'), journalLine(mk('/a')) + journalLine(mk('/b')) + '0123456789abcdef {"type":"mkd');
  const log: string[] = [];
  const s = await open(dir, log);
  assert.deepEqual(s.state.list('/').map((e) => e.name), ['a', 'b']);
  assert.ok(log.some((l) => /dropped a torn record/.test(l)), log.join('\n'));
  await s.close();
  assert.deepEqual((await readdir(dir)).sort(), [checkpointName(1), segmentName(1)]);

  const d = join(top, 'mid');
  await cp(dir, d, { recursive: true });
  await writeFile(join(d, segmentName(1)), journalLine(mk('/c')) + journalLine(mk('/d')));
  await appendFile(join(d, segmentName(2)), journalLine(mk('/e')));
  const text = await readFile(join(d, segmentName(1)), 'utf8');
  await writeFile(join(d, segmentName(1)), text.replace('"/d"', '"/x"'));
  await assert.rejects(open(d), (err: { code: string; message: string }) =>
    err.code === 'IO_ERROR' && err.message.includes(join(d, segmentName(1))) && /damaged at byte \d+/.test(err.message));
  // A torn record at the end of a segment that is not the newest cannot come from a crash.
  await writeFile(join(d, segmentName(1)), journalLine(mk('/c')) + '0123');
  await assert.rejects(open(d), (err: { code: string; message: string }) =>
    err.code === 'IO_ERROR' && err.message.includes(segmentName(1)) && /damaged at byte/.test(err.message));
  // A gap in the segments is refused rather than skipped.
  await rm(join(d, segmentName(1)));
  await assert.rejects(open(d), (err: { code: string; message: string }) => err.code === 'IO_ERROR' && /gap/.test(err.message));
});
