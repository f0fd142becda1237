// The master's metadata state machine. Every replica of the master applies the same entries, so
// these tests protect what must never drift: files appear only at commit and replace old versions
// atomically, chunks of two uploads never mix, nothing leaks (abandoned and replaced chunks become
// garbage), refused entries change nothing, and equal entry lists give byte-equal snapshots.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointReader, writeCheckpointFile } from '../src/master/checkpoint-format.js';
import { DfsError } from '../src/wire/errors.js';
import type { CommitFileEntry, CommittedChunk, Entry } from '../src/master/entries.js';
import { MAX_REPLICATION } from '../src/master/entries.js';
import { MetadataState, type FileStat } from '../src/master/namespace.js';
import { MAX_NAME_BYTES, MAX_PATH_BYTES, normalisePath } from '../src/master/paths.js';
import { seededRandom } from '../src/master/placement.js';

const KEEPERS: readonly string[] = Object.freeze(['k1', 'k2', 'k3']);
const CHUNK = 4;

let counter = 0;
/** A fresh id in the format the master hands out (16 bytes, hex). */
function newId(): string {
  counter++;
  return counter.toString(16).padStart(32, '0');
}

function sha(id: string): string {
  return (id + id).slice(0, 64);
}

let clock = 1_000;
const now = () => ++clock;

function freshState(): MetadataState {
  const s = new MetadataState();
  KEEPERS.forEach((id, i) => s.apply({ type: 'register-keeper', id, address: `127.0.0.1:${7001 + i}`, zone: `z${i}`, capacity: 1 << 30 }));
  return s;
}

function begin(s: MetadataState, path: string, opts: { replication?: number; chunkSize?: number } = {}): string {
  const uploadId = newId();
  s.apply({ type: 'begin-upload', uploadId, path, replication: opts.replication ?? 3, chunkSize: opts.chunkSize ?? CHUNK, mtime: now() });
  return uploadId;
}

function allocate(s: MetadataState, uploadId: string, count: number, replicas = KEEPERS): string[] {
  const ids = Array.from({ length: count }, newId);
  s.apply({ type: 'allocate-chunks', uploadId, chunks: ids.map((id) => ({ id, replicas })), mtime: now() });
  return ids;
}

/** Committed chunks for `size` bytes laid out in CHUNK-sized pieces. */
function layout(ids: readonly string[], size: number, chunkSize = CHUNK, replicas = KEEPERS): CommittedChunk[] {
  return ids.map((id, i) => ({ id, size: Math.min(chunkSize, size - i * chunkSize), sha256: sha(id), replicas }));
}

function commitEntry(uploadId: string, path: string, size: number, ids: readonly string[]): CommitFileEntry {
  return { type: 'commit-file', uploadId, path, size, chunks: layout(ids, size), mtime: now() };
}

/** A whole upload: begin, allocate, commit. */
function writeFile(s: MetadataState, path: string, size: number): { uploadId: string; chunks: string[] } {
  const uploadId = begin(s, path);
  const chunks = size === 0 ? [] : allocate(s, uploadId, Math.ceil(size / CHUNK));
  s.apply(commitEntry(uploadId, path, size, chunks));
  return { uploadId, chunks };
}

function fileStat(s: MetadataState, path: string): FileStat {
  const st = s.stat(path);
  assert.equal(st.type, 'file');
  return st as FileStat;
}

function garbageIds(s: MetadataState): Set<string> {
  return new Set(s.garbage().map((g) => g.id));
}

function assertCode(fn: () => unknown, code: string, message?: string | RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DfsError, `expected a DfsError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  });
}

/** Applies an entry that must be refused and checks the state did not move at all. */
function assertRefusedUnchanged(s: MetadataState, entry: Entry, code: string, message?: string | RegExp): void {
  const before = JSON.stringify(s.snapshot());
  const statsBefore = s.stats();
  assertCode(() => s.validate(entry), code, message);
  assertCode(() => s.apply(entry), code, message);
  assert.equal(JSON.stringify(s.snapshot()), before, `refused ${JSON.stringify(entry)} changed the state`);
  assert.deepEqual(s.stats(), statsBefore);
}

// ---- directories and names -------------------------------------------------------------------

test('mkdir -p creates every missing ancestor and accepts directories that exist', () => {
  const s = freshState();
  assert.deepEqual(s.apply({ type: 'mkdir', path: '/a/b/c', parents: true, mtime: 5 }).created, ['/a', '/a/b', '/a/b/c']);
  assert.deepEqual(s.apply({ type: 'mkdir', path: '/a/b/c', parents: true, mtime: 6 }).created, []);
  assert.deepEqual(s.apply({ type: 'mkdir', path: '/a/b/d/e', parents: true, mtime: 7 }).created, ['/a/b/d', '/a/b/d/e']);
  assert.deepEqual(s.apply({ type: 'mkdir', path: '/', parents: true, mtime: 8 }).created, []);
  assert.deepEqual(s.list('/a/b').map((e) => [e.name, e.type]), [['c', 'dir'], ['d', 'dir']]);
  assert.equal(s.stat('/a/b').mtime, 7, 'the parent of a new directory is modified');
  assert.equal(s.stats().dirs, 6);
});

test('mkdir without -p needs the parent and refuses an existing name', () => {
  const s = freshState();
  assertRefusedUnchanged(s, { type: 'mkdir', path: '/a/b', parents: false, mtime: 1 }, 'NOT_FOUND', 'mkdir /a/b: parent /a does not exist');
  s.apply({ type: 'mkdir', path: '/a', parents: false, mtime: 1 });
  assertRefusedUnchanged(s, { type: 'mkdir', path: '/a', parents: false, mtime: 2 }, 'ALREADY_EXISTS', 'mkdir /a: /a already exists');
  assertRefusedUnchanged(s, { type: 'mkdir', path: '/', parents: false, mtime: 2 }, 'ALREADY_EXISTS');
  assert.deepEqual(s.apply({ type: 'mkdir', path: '/a/b', parents: false, mtime: 3 }).created, ['/a/b']);
});

test('malformed paths are INVALID_ARGUMENT and say what is wrong', () => {
  // One file must have one spelling in the log, or two replicas could disagree about what exists.
  const s = freshState();
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['a/b', /not absolute/],
    ['/a//b', /empty name/],
    ['/a/', /ends with '\/'/],
    ['/./a', /'\.'/],
    ['/a/..', /'\.\.'/],
    ['/a\0b', /NUL/],
    ['/bad\uD800name', /surrogate/],
    ['/' + 'x'.repeat(MAX_NAME_BYTES + 1), /256 bytes long, more than the limit of 255/],
    ['/' + '€'.repeat(86), /258 bytes long/],
    ['/' + Array.from({ length: 2048 }, () => 'x').join('/') + '/y', /4098 bytes long, more than the limit of 4096/],
  ];
  for (const [path, why] of cases) {
    assertRefusedUnchanged(s, { type: 'mkdir', path, parents: true, mtime: 1 }, 'INVALID_ARGUMENT', why);
    assertCode(() => s.lookup(path), 'INVALID_ARGUMENT', why);
    assertCode(() => s.stat(path), 'INVALID_ARGUMENT', why);
  }
});

test('names and paths exactly at the limits are accepted', () => {
  const s = freshState();
  const longName = '/' + 'x'.repeat(MAX_NAME_BYTES);
  const longUtf8 = '/' + '€'.repeat(MAX_NAME_BYTES / 3);
  s.apply({ type: 'mkdir', path: longName, parents: false, mtime: 1 });
  s.apply({ type: 'mkdir', path: longUtf8, parents: false, mtime: 1 });
  const deep = '/' + Array.from({ length: MAX_PATH_BYTES / 2 - 1 }, () => 'd').join('/') + '/x';
  assert.equal(Buffer.byteLength(deep), MAX_PATH_BYTES);
  s.apply({ type: 'mkdir', path: deep, parents: true, mtime: 1 });
  assert.equal(s.stat(deep).type, 'dir');
  // Removing 2048 nested directories must not overflow the stack.
  assert.equal(s.apply({ type: 'remove', path: '/d', recursive: true, mtime: 2 }).dirs, MAX_PATH_BYTES / 2);
});

test('normalisePath turns typed paths into canonical ones and refuses what cannot be', () => {
  assert.equal(normalisePath('/a//b/'), '/a/b');
  assert.equal(normalisePath('///'), '/');
  assert.equal(normalisePath('/x'), '/x');
  assertCode(() => normalisePath('a'), 'INVALID_ARGUMENT');
  assertCode(() => normalisePath('/a/../b'), 'INVALID_ARGUMENT');
});

test('a file where a directory is needed is NOT_A_DIRECTORY, naming the file', () => {
  const s = freshState();
  s.apply({ type: 'mkdir', path: '/a', parents: false, mtime: 1 });
  writeFile(s, '/a/f', 3);
  assertRefusedUnchanged(s, { type: 'mkdir', path: '/a/f/x', parents: false, mtime: 2 }, 'NOT_A_DIRECTORY', 'mkdir /a/f/x: parent /a/f is a file');
  assertRefusedUnchanged(s, { type: 'mkdir', path: '/a/f/x/y', parents: true, mtime: 2 }, 'NOT_A_DIRECTORY', 'mkdir /a/f/x/y: /a/f is a file, not a directory');
  assertRefusedUnchanged(s, { type: 'mkdir', path: '/a/f', parents: true, mtime: 2 }, 'ALREADY_EXISTS', /exists and is a file/);
  assertRefusedUnchanged(
    s,
    { type: 'begin-upload', uploadId: newId(), path: '/a/f/g', replication: 3, chunkSize: CHUNK, mtime: 2 },
    'NOT_A_DIRECTORY',
    'upload /a/f/g: parent /a/f is a file',
  );
  assertCode(() => s.list('/a/f'), 'NOT_A_DIRECTORY', 'list /a/f: /a/f is a file');
  assertCode(() => s.stat('/a/f/g'), 'NOT_A_DIRECTORY');
  assert.equal(s.lookup('/a/f/g'), undefined);
  assertCode(() => s.stat('/nope/x'), 'NOT_FOUND', 'stat /nope/x: parent /nope does not exist');
  assertCode(() => s.stat('/a/nope'), 'NOT_FOUND', 'stat /a/nope: no such file or directory');
});

// ---- uploads and commits ---------------------------------------------------------------------

test('a file is invisible until commit, then appears whole with its chunks and replicas', () => {
  const s = freshState();
  const uploadId = begin(s, '/f');
  const ids = allocate(s, uploadId, 3);
  assert.equal(s.lookup('/f'), undefined, 'nothing is visible before commit');
  assert.deepEqual(s.list('/'), []);
  const result = s.apply(commitEntry(uploadId, '/f', 10, ids));
  assert.deepEqual(result, { path: '/f', replaced: false, garbageChunks: 0 });
  const st = fileStat(s, '/f');
  assert.equal(st.size, 10);
  assert.equal(st.replication, 3);
  assert.equal(st.chunkSize, CHUNK);
  assert.equal(st.uploadId, uploadId);
  assert.deepEqual(st.chunks.map((c) => [c.id, c.size, c.replicas]), [[ids[0], 4, KEEPERS], [ids[1], 4, KEEPERS], [ids[2], 2, KEEPERS]]);
  assert.deepEqual(s.chunkLocations('/f').map((c) => [c.id, c.offset, c.size]), [[ids[0], 0, 4], [ids[1], 4, 4], [ids[2], 8, 2]]);
  assert.deepEqual(s.list('/'), [{ name: 'f', type: 'file', size: 10, replication: 3, mtime: st.mtime, chunks: 3, chunkSize: 4 }]);
  assert.equal(s.upload(uploadId), undefined, 'the upload is no longer pending');
  assert.deepEqual(s.stats(), { dirs: 1, files: 1, bytes: 10, chunks: 3, uploads: 0, garbage: 0, keepers: 3 });
});

test('an empty file has no chunks', () => {
  const s = freshState();
  const uploadId = begin(s, '/empty');
  s.apply({ type: 'commit-file', uploadId, path: '/empty', size: 0, chunks: [], mtime: now() });
  assert.equal(fileStat(s, '/empty').chunks.length, 0);
});

test('commit over an existing file replaces it atomically; the old chunks become garbage', () => {
  const s = freshState();
  const v1 = writeFile(s, '/f', 8);
  const uploadId = begin(s, '/f');
  const ids = allocate(s, uploadId, 1);
  assert.equal(fileStat(s, '/f').uploadId, v1.uploadId, 'readers keep seeing v1 while v2 uploads');
  const result = s.apply(commitEntry(uploadId, '/f', 3, ids));
  assert.deepEqual(result, { path: '/f', replaced: true, garbageChunks: 2 });
  const st = fileStat(s, '/f');
  assert.deepEqual(st.chunks.map((c) => c.id), ids);
  assert.equal(st.size, 3);
  assert.deepEqual(s.garbage().map((g) => [g.id, g.keepers]), v1.chunks.map((id) => [id, KEEPERS]));
  assert.deepEqual(s.stats().files, 1);
  assert.deepEqual(s.stats().bytes, 3);
});

test('two concurrent uploads of one path: the later commit wins whole, the loser\'s chunks become garbage', () => {
  // Chunk ids are random, never derived from the path, so neither upload can touch the other's chunks.
  for (const order of [['a', 'b'], ['b', 'a']] as const) {
    const s = freshState();
    const up = {
      a: { id: begin(s, '/shared'), chunks: [] as string[] },
      b: { id: begin(s, '/shared'), chunks: [] as string[] },
    };
    // Interleaved allocations, as two clients writing at once would produce.
    for (let i = 0; i < 3; i++) {
      up.a.chunks.push(...allocate(s, up.a.id, 1));
      up.b.chunks.push(...allocate(s, up.b.id, 1));
    }
    const [first, second] = order;
    s.apply(commitEntry(up[first].id, '/shared', 12, up[first].chunks));
    s.apply(commitEntry(up[second].id, '/shared', 12, up[second].chunks));
    const st = fileStat(s, '/shared');
    assert.deepEqual(st.chunks.map((c) => c.id), up[second].chunks, 'the file holds exactly the winner\'s chunks');
    assert.equal(st.uploadId, up[second].id);
    assert.deepEqual(garbageIds(s), new Set(up[first].chunks));
    assert.deepEqual(s.stats(), { dirs: 1, files: 1, bytes: 12, chunks: 3, uploads: 0, garbage: 3, keepers: 3 });
  }
});

test('a commit cannot borrow chunks of another upload, so versions never mix', () => {
  const s = freshState();
  const a = begin(s, '/f');
  const b = begin(s, '/f');
  const aChunks = allocate(s, a, 2);
  const bChunks = allocate(s, b, 2);
  assertRefusedUnchanged(
    s,
    commitEntry(a, '/f', 8, [aChunks[0], bChunks[1]]),
    'INVALID_ARGUMENT',
    new RegExp(`chunk ${bChunks[1]} was not allocated to upload ${a}`),
  );
  const committed = writeFile(s, '/g', 4);
  assertRefusedUnchanged(s, commitEntry(b, '/f', 8, [bChunks[0], committed.chunks[0]]), 'INVALID_ARGUMENT');
  assertRefusedUnchanged(s, commitEntry(b, '/f', 8, [bChunks[0], bChunks[0]]), 'INVALID_ARGUMENT', /listed twice/);
});

test('chunk ids are never reused: allocating a known id is ALREADY_EXISTS', () => {
  const s = freshState();
  const live = writeFile(s, '/f', 4).chunks[0];
  const up = begin(s, '/g');
  const pending = allocate(s, up, 1)[0];
  const dead = writeFile(s, '/h', 4).chunks[0];
  s.apply({ type: 'remove', path: '/h', recursive: false, mtime: now() });
  for (const id of [live, pending, dead]) {
    assertRefusedUnchanged(s, { type: 'allocate-chunks', uploadId: up, chunks: [{ id, replicas: ['k1'] }], mtime: 1 }, 'ALREADY_EXISTS', /already in use/);
  }
  const fresh = newId();
  assertRefusedUnchanged(s, { type: 'allocate-chunks', uploadId: up, chunks: [{ id: fresh, replicas: ['k1'] }, { id: fresh, replicas: ['k2'] }], mtime: 1 }, 'INVALID_ARGUMENT', /listed twice/);
  assertRefusedUnchanged(s, { type: 'allocate-chunks', uploadId: up, chunks: [{ id: fresh, replicas: ['k9'] }], mtime: 1 }, 'NOT_FOUND', /keeper k9 is not registered/);
});

test('allocated chunks left out of the commit become garbage', () => {
  // A pipeline that failed mid-chunk is retried under a fresh id; the first id may sit on keepers.
  const s = freshState();
  const up = begin(s, '/f');
  const [failed] = allocate(s, up, 1, ['k1', 'k2']);
  const [retried, second] = allocate(s, up, 2);
  assert.equal(s.apply(commitEntry(up, '/f', 6, [retried, second])).garbageChunks, 1);
  assert.deepEqual(s.garbage().map((g) => [g.id, g.keepers]), [[failed, ['k1', 'k2']]]);
});

test('commit checks the chunk layout against the size and chunk size', () => {
  const s = freshState();
  const up = begin(s, '/f');
  const ids = allocate(s, up, 3);
  const bad = (chunks: CommittedChunk[], size: number): Entry => ({ type: 'commit-file', uploadId: up, path: '/f', size, chunks, mtime: 1 });
  assertRefusedUnchanged(s, bad(layout(ids, 10), 12), 'INVALID_ARGUMENT', /chunk 2 .* has 2 bytes, expected 4/);
  assertRefusedUnchanged(s, bad(layout(ids.slice(0, 2), 8), 10), 'INVALID_ARGUMENT', /need 3 chunks, the commit lists 2/);
  assertRefusedUnchanged(s, bad(layout(ids, 10).map((c, i) => (i === 0 ? { ...c, size: 3 } : c)), 10), 'INVALID_ARGUMENT', /expected 4/);
  assertRefusedUnchanged(s, bad(layout(ids, 10).map((c) => ({ ...c, replicas: ['k1', 'nope'] })), 10), 'NOT_FOUND', /keeper nope/);
  assertRefusedUnchanged(s, { ...commitEntry(up, '/other', 10, ids) }, 'INVALID_ARGUMENT', /was begun for \/f/);
});

test('commit needs the parent directory and refuses to replace a directory', () => {
  const s = freshState();
  s.apply({ type: 'mkdir', path: '/d', parents: false, mtime: 1 });
  const up = begin(s, '/d/f');
  const ids = allocate(s, up, 1);
  s.apply({ type: 'remove', path: '/d', recursive: true, mtime: 2 });
  assertRefusedUnchanged(s, commitEntry(up, '/d/f', 4, ids), 'NOT_FOUND', 'commit /d/f: parent /d does not exist');
  s.apply({ type: 'mkdir', path: '/d/f', parents: true, mtime: 3 });
  assertRefusedUnchanged(s, commitEntry(up, '/d/f', 4, ids), 'IS_A_DIRECTORY', 'commit /d/f: /d/f is a directory');
  assertRefusedUnchanged(s, { type: 'begin-upload', uploadId: newId(), path: '/d/f', replication: 3, chunkSize: 4, mtime: 1 }, 'IS_A_DIRECTORY');
  assertRefusedUnchanged(s, { type: 'begin-upload', uploadId: newId(), path: '/x/y', replication: 3, chunkSize: 4, mtime: 1 }, 'NOT_FOUND', 'upload /x/y: parent /x does not exist');
  assertRefusedUnchanged(s, { type: 'begin-upload', uploadId: newId(), path: '/', replication: 3, chunkSize: 4, mtime: 1 }, 'IS_A_DIRECTORY');
  // A refused commit leaves the upload pending; the client can still abort it and nothing leaks.
  assert.equal(s.apply({ type: 'abort-upload', uploadId: up, mtime: 4 }).garbageChunks, 1);
  assert.ok(garbageIds(s).has(ids[0]));
});

test('replication and chunk size limits are enforced at begin-upload', () => {
  const s = freshState();
  const entry = (replication: number, chunkSize: number): Entry =>
    ({ type: 'begin-upload', uploadId: newId(), path: '/f', replication, chunkSize, mtime: 1 });
  assertRefusedUnchanged(s, entry(0, 4), 'INVALID_ARGUMENT', /replication must be an integer from 1 to 16/);
  assertRefusedUnchanged(s, entry(MAX_REPLICATION + 1, 4), 'INVALID_ARGUMENT');
  assertRefusedUnchanged(s, entry(3, 0), 'INVALID_ARGUMENT', /chunkSize/);
  s.apply(entry(MAX_REPLICATION, 4));
  const id = newId();
  s.apply({ type: 'begin-upload', uploadId: id, path: '/f', replication: 2, chunkSize: 4, mtime: 1 });
  assertRefusedUnchanged(s, { type: 'begin-upload', uploadId: id, path: '/g', replication: 2, chunkSize: 4, mtime: 1 }, 'ALREADY_EXISTS', /already in use/);
  assertRefusedUnchanged(s, { type: 'allocate-chunks', uploadId: id, chunks: [{ id: newId(), replicas: KEEPERS }], mtime: 1 }, 'INVALID_ARGUMENT', /more than the file's replication of 2/);
});

test('abort leaves the existing file untouched and turns the upload\'s chunks into garbage', () => {
  const s = freshState();
  const v1 = writeFile(s, '/f', 5);
  const before = fileStat(s, '/f');
  const up = begin(s, '/f');
  const ids = allocate(s, up, 2);
  assert.deepEqual(s.apply({ type: 'abort-upload', uploadId: up, mtime: now() }), { path: '/f', garbageChunks: 2 });
  assert.deepEqual(s.stat('/f'), before);
  assert.deepEqual(garbageIds(s), new Set(ids));
  assert.ok(v1.chunks.every((id) => !garbageIds(s).has(id)));
  assertRefusedUnchanged(s, commitEntry(up, '/f', 8, ids), 'NOT_FOUND', /upload .* is not pending/);
  assertRefusedUnchanged(s, { type: 'abort-upload', uploadId: up, mtime: 1 }, 'NOT_FOUND');
});

test('pending uploads are listed with their start and last activity, for the abandoned-upload sweep', () => {
  const s = freshState();
  const up = s.apply({ type: 'begin-upload', uploadId: newId(), path: '/f', replication: 2, chunkSize: 4, mtime: 100 }).uploadId;
  const [c] = Array.from({ length: 1 }, newId);
  s.apply({ type: 'allocate-chunks', uploadId: up, chunks: [{ id: c, replicas: ['k1', 'k2'] }], mtime: 250 });
  assert.deepEqual(s.uploads(), [{ uploadId: up, path: '/f', replication: 2, chunkSize: 4, started: 100, touched: 250, chunks: [{ id: c, replicas: ['k1', 'k2'] }] }]);
});

// ---- remove and rename -----------------------------------------------------------------------

test('rm of a non-empty directory needs recursive; rm -r removes the subtree and collects its chunks', () => {
  const s = freshState();
  s.apply({ type: 'mkdir', path: '/d/e', parents: true, mtime: 1 });
  const f1 = writeFile(s, '/d/f1', 8);
  const f2 = writeFile(s, '/d/e/f2', 4);
  const keep = writeFile(s, '/keep', 4);
  assertRefusedUnchanged(s, { type: 'remove', path: '/d', recursive: false, mtime: 2 }, 'DIRECTORY_NOT_EMPTY', /holds 2 entries; remove it recursively/);
  assertRefusedUnchanged(s, { type: 'remove', path: '/', recursive: true, mtime: 2 }, 'INVALID_ARGUMENT', /root directory cannot be removed/);
  assertRefusedUnchanged(s, { type: 'remove', path: '/nope', recursive: true, mtime: 2 }, 'NOT_FOUND');
  assert.deepEqual(s.apply({ type: 'remove', path: '/d', recursive: true, mtime: 3 }), { files: 2, dirs: 2, garbageChunks: 3 });
  assert.equal(s.lookup('/d'), undefined);
  assert.deepEqual(garbageIds(s), new Set([...f1.chunks, ...f2.chunks]));
  assert.deepEqual(s.list('/').map((e) => e.name), ['keep']);
  assert.deepEqual(s.stats(), { dirs: 1, files: 1, bytes: 4, chunks: 1, uploads: 0, garbage: 3, keepers: 3 });
  assert.equal(s.chunkOwner(keep.chunks[0])?.path, '/keep');
  assert.equal(s.chunkOwner(f1.chunks[0]), undefined);
  // Files and empty directories go without recursive.
  s.apply({ type: 'remove', path: '/keep', recursive: false, mtime: 4 });
  s.apply({ type: 'mkdir', path: '/empty', parents: false, mtime: 4 });
  s.apply({ type: 'remove', path: '/empty', recursive: false, mtime: 5 });
  assert.deepEqual(s.list('/'), []);
});

test('rename moves a directory with everything below it in one step', () => {
  const s = freshState();
  s.apply({ type: 'mkdir', path: '/a/b', parents: true, mtime: 1 });
  const f = writeFile(s, '/a/b/f', 4);
  s.apply({ type: 'mkdir', path: '/z', parents: false, mtime: 1 });
  assert.deepEqual(s.apply({ type: 'rename', src: '/a', dst: '/z/a2', mtime: 9 }), { replaced: false, garbageChunks: 0 });
  assert.equal(s.lookup('/a'), undefined);
  assert.equal(fileStat(s, '/z/a2/b/f').uploadId, f.uploadId);
  assert.equal(s.chunkOwner(f.chunks[0])?.path, '/z/a2/b/f', 'chunk owners follow renames');
  assert.equal(s.stat('/z').mtime, 9);
  assert.equal(s.stat('/').mtime, 9);
  // Renaming onto itself is a no-op, as in POSIX.
  const before = JSON.stringify(s.snapshot());
  s.apply({ type: 'rename', src: '/z/a2', dst: '/z/a2', mtime: 10 });
  assert.equal(JSON.stringify(s.snapshot()), before);
});

test('rename refuses to move a directory into itself', () => {
  // Allowed, it would detach the subtree from the root into a cycle: lost files that still hold space.
  const s = freshState();
  s.apply({ type: 'mkdir', path: '/a/b', parents: true, mtime: 1 });
  assertRefusedUnchanged(s, { type: 'rename', src: '/a', dst: '/a/b/a', mtime: 2 }, 'INVALID_ARGUMENT', 'rename /a to /a/b/a: a directory cannot be moved into itself');
  assertRefusedUnchanged(s, { type: 'rename', src: '/a', dst: '/a/x', mtime: 2 }, 'INVALID_ARGUMENT');
  assertRefusedUnchanged(s, { type: 'rename', src: '/', dst: '/q', mtime: 2 }, 'INVALID_ARGUMENT', /root directory cannot be moved/);
  // A sibling whose name merely starts with the same letters is not inside.
  s.apply({ type: 'rename', src: '/a/b', dst: '/ab', mtime: 3 });
  assert.equal(s.stat('/ab').type, 'dir');
});

test('rename replaces a file at the destination and collects its chunks', () => {
  const s = freshState();
  const src = writeFile(s, '/new', 4);
  const old = writeFile(s, '/cur', 8);
  assert.deepEqual(s.apply({ type: 'rename', src: '/new', dst: '/cur', mtime: 5 }), { replaced: true, garbageChunks: 2 });
  assert.equal(fileStat(s, '/cur').uploadId, src.uploadId);
  assert.equal(s.lookup('/new'), undefined);
  assert.deepEqual(garbageIds(s), new Set(old.chunks));
  assert.equal(s.stats().files, 1);
});

test('rename refuses kind mismatches and non-empty directories at the destination', () => {
  const s = freshState();
  s.apply({ type: 'mkdir', path: '/d/inner', parents: true, mtime: 1 });
  s.apply({ type: 'mkdir', path: '/empty', parents: true, mtime: 1 });
  s.apply({ type: 'mkdir', path: '/src', parents: true, mtime: 1 });
  writeFile(s, '/f', 4);
  assertRefusedUnchanged(s, { type: 'rename', src: '/f', dst: '/d', mtime: 2 }, 'IS_A_DIRECTORY', /\/d is a directory/);
  assertRefusedUnchanged(s, { type: 'rename', src: '/src', dst: '/f', mtime: 2 }, 'NOT_A_DIRECTORY', /\/f is a file/);
  assertRefusedUnchanged(s, { type: 'rename', src: '/src', dst: '/d', mtime: 2 }, 'DIRECTORY_NOT_EMPTY', /holding 1 entries/);
  assertRefusedUnchanged(s, { type: 'rename', src: '/nope', dst: '/x', mtime: 2 }, 'NOT_FOUND', 'rename /nope to /x: /nope does not exist');
  assertRefusedUnchanged(s, { type: 'rename', src: '/f', dst: '/missing/x', mtime: 2 }, 'NOT_FOUND', 'rename /missing/x: parent /missing does not exist');
  assertRefusedUnchanged(s, { type: 'rename', src: '/src', dst: '/f/x', mtime: 2 }, 'NOT_A_DIRECTORY');
  // An empty directory may be replaced by a directory, as rename(2) allows.
  assert.deepEqual(s.apply({ type: 'rename', src: '/src', dst: '/empty', mtime: 3 }), { replaced: true, garbageChunks: 0 });
  assert.equal(s.stats().dirs, 4);
});

// ---- keepers, replicas, garbage ---------------------------------------------------------------

test('re-registering a keeper updates its address and zone', () => {
  const s = freshState();
  assert.deepEqual(s.apply({ type: 'register-keeper', id: 'k1', address: '10.0.0.5:7001', zone: 'z9', capacity: 5 }), { created: false });
  assert.deepEqual(s.keeper('k1'), { id: 'k1', address: '10.0.0.5:7001', zone: 'z9', capacity: 5 });
  assert.equal(s.keepers().length, 3);
  assertRefusedUnchanged(s, { type: 'register-keeper', id: 'bad id', address: 'x', zone: 'z', capacity: 1 }, 'INVALID_ARGUMENT');
});

test('update-replicas records re-replication and lost copies; chunksOnKeeper follows', () => {
  const s = freshState();
  s.apply({ type: 'register-keeper', id: 'k4', address: '127.0.0.1:7004', zone: 'z3', capacity: 1 << 30 });
  const f = writeFile(s, '/f', 8);
  assert.deepEqual(new Set(s.chunksOnKeeper('k1')), new Set(f.chunks));
  const r = s.apply({ type: 'update-replicas', chunkId: f.chunks[0], add: ['k4'], remove: ['k1'], mtime: 2 });
  assert.deepEqual(r.replicas, ['k2', 'k3', 'k4']);
  assert.deepEqual(fileStat(s, '/f').chunks[0].replicas, ['k2', 'k3', 'k4']);
  assert.deepEqual(s.chunksOnKeeper('k1'), [f.chunks[1]]);
  assert.deepEqual(s.chunksOnKeeper('k4'), [f.chunks[0]]);
  assert.deepEqual(s.chunkOwner(f.chunks[0]), { chunk: fileStat(s, '/f').chunks[0], path: '/f', index: 0, replication: 3 });
  // The dropped copy may still be on k1: it is garbage there from the entry's time.
  assert.deepEqual(s.garbageOf(f.chunks[0]), { id: f.chunks[0], keepers: ['k1'], since: 2 });
  assertRefusedUnchanged(s, { type: 'update-replicas', chunkId: newId(), add: ['k1'], remove: [], mtime: 2 }, 'NOT_FOUND');
  assertRefusedUnchanged(s, { type: 'update-replicas', chunkId: f.chunks[0], add: ['k1'], remove: ['k1'], mtime: 2 }, 'INVALID_ARGUMENT');
  assertRefusedUnchanged(s, { type: 'update-replicas', chunkId: f.chunks[0], add: ['k7'], remove: [], mtime: 2 }, 'NOT_FOUND');
  s.apply({ type: 'remove', path: '/f', recursive: false, mtime: 3 });
  assert.deepEqual(s.chunksOnKeeper('k4'), []);
  assert.deepEqual(s.garbage().find((g) => g.id === f.chunks[0])?.keepers, ['k1', 'k2', 'k3', 'k4']);
  assert.equal(s.garbageOf(f.chunks[0])?.since, 3);
});

test('update-replicas that adds a keeper back takes its copy out of the garbage', () => {
  const s = freshState();
  const f = writeFile(s, '/f', 4);
  s.apply({ type: 'update-replicas', chunkId: f.chunks[0], add: [], remove: ['k2'], mtime: 5 });
  assert.deepEqual(s.garbageOf(f.chunks[0])?.keepers, ['k2']);
  s.apply({ type: 'update-replicas', chunkId: f.chunks[0], add: ['k2'], remove: [], mtime: 6 });
  assert.equal(s.garbageOf(f.chunks[0]), undefined);
});

test('mark-garbage records unused copies and skips copies a file or an upload uses where they are', () => {
  const s = freshState();
  const f = writeFile(s, '/f', 4);
  const stray = newId();
  const r = s.apply({
    type: 'mark-garbage', mtime: 9,
    chunks: [{ id: f.chunks[0], keepers: ['k1', 'k4'] }, { id: stray, keepers: ['k2'] }],
  });
  assert.equal(r.marked, 2);
  assert.deepEqual(s.garbageOf(f.chunks[0]), { id: f.chunks[0], keepers: ['k4'], since: 9 });
  assert.deepEqual(s.garbageOf(stray), { id: stray, keepers: ['k2'], since: 9 });
  // A committed chunk with garbage copies elsewhere survives a checkpoint round trip.
  assert.deepEqual(MetadataState.fromSnapshot(JSON.parse(JSON.stringify(s.snapshot()))).snapshot(), s.snapshot());
  s.apply({ type: 'begin-upload', uploadId: newId(), path: '/g', replication: 3, chunkSize: 4, mtime: 10 });
  const uploading = s.uploads()[0]!;
  const chunk = newId();
  s.apply({ type: 'allocate-chunks', uploadId: uploading.uploadId, chunks: [{ id: chunk, replicas: ['k1'] }], mtime: 11 });
  assert.equal(s.apply({ type: 'mark-garbage', mtime: 12, chunks: [{ id: chunk, keepers: ['k1'] }] }).marked, 0);
  assert.equal(s.garbageOf(chunk), undefined);
  assertRefusedUnchanged(s, { type: 'mark-garbage', mtime: 12, chunks: [] }, 'INVALID_ARGUMENT');
});

test('forget-keeper removes a keeper that holds nothing, and refuses one that still does', () => {
  const s = freshState();
  s.apply({ type: 'register-keeper', id: 'k4', address: '127.0.0.1:7004', zone: 'z3', capacity: 1 << 30 });
  const f = writeFile(s, '/f', 4);
  assertRefusedUnchanged(s, { type: 'forget-keeper', id: 'k1' }, 'INVALID_ARGUMENT');
  assertRefusedUnchanged(s, { type: 'forget-keeper', id: 'k9' }, 'NOT_FOUND');
  s.apply({ type: 'keeper-mode', id: 'k4', mode: 'draining', until: 0 });
  s.apply({ type: 'mark-garbage', chunks: [{ id: f.chunks[0], keepers: ['k4'] }, { id: newId(), keepers: ['k4', 'k2'] }], mtime: 5 });
  const uploadId = begin(s, '/g');
  allocate(s, uploadId, 1, ['k4']);
  assertRefusedUnchanged(s, { type: 'forget-keeper', id: 'k4' }, 'INVALID_ARGUMENT');
  s.apply({ type: 'abort-upload', uploadId, mtime: 6 });
  const r = s.apply({ type: 'forget-keeper', id: 'k4' });
  assert.equal(r.garbageReleased, 3);
  assert.equal(s.keeper('k4'), undefined);
  assert.equal(s.keeperMode('k4').mode, 'normal');
  assert.ok(s.garbage().every((g) => !g.keepers.includes('k4')));
  assert.deepEqual(MetadataState.fromSnapshot(JSON.parse(JSON.stringify(s.snapshot()))).snapshot(), s.snapshot());
});

test('keeper modes and garbage copies of committed chunks survive a binary checkpoint', () => {
  const s = freshState();
  const f = writeFile(s, '/f', 4);
  s.apply({ type: 'keeper-mode', id: 'k1', mode: 'maintenance', until: 1234 });
  s.apply({ type: 'keeper-mode', id: 'k2', mode: 'draining', until: 0 });
  s.apply({ type: 'update-replicas', chunkId: f.chunks[0], add: [], remove: ['k3'], mtime: 77 });
  const dir = mkdtempSync(join(tmpdir(), 'dfs-ns-'));
  try {
    const file = join(dir, 'c.ckpt');
    writeCheckpointFile(file, (w) => s.writeCheckpoint(w));
    const back = MetadataState.readCheckpoint(CheckpointReader.open(file));
    assert.deepEqual(back.snapshot(), s.snapshot());
    assert.deepEqual(back.keeperMode('k1'), { id: 'k1', mode: 'maintenance', until: 1234 });
    assert.deepEqual(back.garbageOf(f.chunks[0]), { id: f.chunks[0], keepers: ['k3'], since: 77 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('keeper-mode sets maintenance and draining, survives checkpoints, and normal clears it', () => {
  const s = freshState();
  assert.deepEqual(s.keeperMode('k1'), { id: 'k1', mode: 'normal', until: 0 });
  s.apply({ type: 'keeper-mode', id: 'k1', mode: 'maintenance', until: 1000 });
  s.apply({ type: 'keeper-mode', id: 'k2', mode: 'draining', until: 0 });
  assert.deepEqual(s.keeperMode('k1'), { id: 'k1', mode: 'maintenance', until: 1000 });
  const copy = MetadataState.fromSnapshot(JSON.parse(JSON.stringify(s.snapshot())));
  assert.deepEqual(copy.keeperMode('k2'), { id: 'k2', mode: 'draining', until: 0 });
  s.apply({ type: 'keeper-mode', id: 'k1', mode: 'normal', until: 0 });
  assert.equal(s.keeperMode('k1').mode, 'normal');
  assertRefusedUnchanged(s, { type: 'keeper-mode', id: 'k9', mode: 'draining', until: 0 }, 'NOT_FOUND');
  assertRefusedUnchanged(s, { type: 'keeper-mode', id: 'k1', mode: 'draining', until: 5 }, 'INVALID_ARGUMENT');
  assertRefusedUnchanged(s, { type: 'keeper-mode', id: 'k1', mode: 'asleep' as 'normal', until: 0 }, 'INVALID_ARGUMENT');
});

test('stat hands out copies: a later replica update does not change an earlier answer', () => {
  const s = freshState();
  const f = writeFile(s, '/f', 4);
  const before = fileStat(s, '/f');
  s.apply({ type: 'update-replicas', chunkId: f.chunks[0], add: [], remove: ['k3'], mtime: 2 });
  assert.deepEqual(before.chunks[0].replicas, KEEPERS);
  assert.ok(Object.isFrozen(before.chunks[0]));
});

test('forget-garbage drops keepers as they confirm deletion, and the record with the last one', () => {
  const s = freshState();
  const f = writeFile(s, '/f', 4);
  s.apply({ type: 'remove', path: '/f', recursive: false, mtime: 77 });
  const [id] = f.chunks;
  assert.deepEqual(s.garbage(), [{ id, keepers: KEEPERS, since: 77 }]);
  assert.deepEqual(s.apply({ type: 'forget-garbage', chunks: [{ id, keepers: ['k1', 'k3'] }] }), { forgotten: 0 });
  assert.deepEqual(s.garbage(), [{ id, keepers: ['k2'], since: 77 }]);
  // Repeated and unknown confirmations are harmless.
  assert.deepEqual(s.apply({ type: 'forget-garbage', chunks: [{ id, keepers: ['k1', 'k2'] }, { id: newId(), keepers: ['k1'] }] }), { forgotten: 1 });
  assert.deepEqual(s.garbage(), []);
});

// ---- atomicity, checkpoints, determinism ------------------------------------------------------

test('entries are copied on apply: mutating the caller\'s object later cannot reach the state', () => {
  const s = freshState();
  const up = begin(s, '/f');
  const ids = allocate(s, up, 1);
  const replicas = ['k1', 'k2'];
  const chunks = [{ id: ids[0], size: 4, sha256: sha(ids[0]), replicas }];
  s.apply({ type: 'commit-file', uploadId: up, path: '/f', size: 4, chunks, mtime: now() });
  replicas.push('k3');
  chunks.length = 0;
  assert.deepEqual(fileStat(s, '/f').chunks[0].replicas, ['k1', 'k2']);
});

test('malformed entries from a journal are refused without touching the state', () => {
  const s = freshState();
  writeFile(s, '/f', 4);
  const bad: unknown[] = [
    null,
    [],
    { type: 'format-disk' },
    { type: 'mkdir', path: '/x', parents: 'yes', mtime: 1 },
    { type: 'mkdir', path: '/x', parents: true, mtime: -1 },
    { type: 'mkdir', path: '/x', parents: true, mtime: 1.5 },
    { type: 'begin-upload', uploadId: 'XYZ', path: '/x', replication: 3, chunkSize: 4, mtime: 1 },
    { type: 'commit-file', uploadId: newId(), path: '/x', size: 4, chunks: [{ id: newId(), size: 4, sha256: 'nothex', replicas: ['k1'] }], mtime: 1 },
    { type: 'allocate-chunks', uploadId: newId(), chunks: [], mtime: 1 },
    { type: 'allocate-chunks', uploadId: newId(), chunks: [{ id: newId(), replicas: ['k1', 'k1'] }], mtime: 1 },
  ];
  for (const entry of bad) assertRefusedUnchanged(s, entry as Entry, 'INVALID_ARGUMENT');
});

/** A state with every kind of record: dirs, files, a pending upload, replaced chunks, keepers. */
function busyState(): MetadataState {
  const s = freshState();
  s.apply({ type: 'mkdir', path: '/home/ana/docs', parents: true, mtime: 10 });
  s.apply({ type: 'mkdir', path: '/srv/10', parents: true, mtime: 11 });
  s.apply({ type: 'mkdir', path: '/srv/9', parents: true, mtime: 11 });
  writeFile(s, '/home/ana/docs/report.txt', 9);
  writeFile(s, '/home/ana/docs/report.txt', 5);
  writeFile(s, '/srv/10/é l\u00e8ve', 4);
  writeFile(s, '/srv/empty', 0);
  const up = begin(s, '/srv/9/pending', { replication: 2, chunkSize: 8 });
  allocate(s, up, 2, ['k3', 'k1']);
  const aborted = begin(s, '/home/ana/x');
  allocate(s, aborted, 1);
  s.apply({ type: 'abort-upload', uploadId: aborted, mtime: now() });
  return s;
}

test('snapshot round trip gives the same state, query for query', () => {
  const s = busyState();
  const snap = s.snapshot();
  const text = JSON.stringify(snap);
  const restored = MetadataState.fromSnapshot(JSON.parse(text));
  assert.equal(JSON.stringify(restored.snapshot()), text);
  assert.deepEqual(restored.stats(), s.stats());
  for (const path of ['/', '/home/ana/docs', '/srv', '/srv/10']) assert.deepEqual(restored.list(path), s.list(path));
  assert.deepEqual(restored.stat('/home/ana/docs/report.txt'), s.stat('/home/ana/docs/report.txt'));
  assert.deepEqual(restored.chunkLocations('/srv/10/é l\u00e8ve'), s.chunkLocations('/srv/10/é l\u00e8ve'));
  assert.deepEqual(new Set(restored.chunksOnKeeper('k2')), new Set(s.chunksOnKeeper('k2')));
  assert.deepEqual(restored.uploads(), s.uploads());
  // Both continue identically.
  const next: Entry[] = [
    { type: 'rename', src: '/home', dst: '/srv/9/home', mtime: 500 },
    { type: 'remove', path: '/srv/10', recursive: true, mtime: 501 },
  ];
  for (const e of next) assert.deepEqual(restored.apply(e), s.apply(e));
  assert.equal(JSON.stringify(restored.snapshot()), JSON.stringify(s.snapshot()));
});

test('the snapshot is canonical: children sorted by name whatever the creation order', () => {
  const a = new MetadataState();
  const b = new MetadataState();
  for (const name of ['b', 'a', '10', '9']) a.apply({ type: 'mkdir', path: '/' + name, parents: false, mtime: 1 });
  for (const name of ['9', 'a', '10', 'b']) b.apply({ type: 'mkdir', path: '/' + name, parents: false, mtime: 1 });
  assert.equal(JSON.stringify(a.snapshot()), JSON.stringify(b.snapshot()));
  assert.deepEqual(a.snapshot().root.children.map((c) => c.name), ['10', '9', 'a', 'b']);
});

test('a corrupt checkpoint is refused rather than loaded half-way', () => {
  const snap = JSON.parse(JSON.stringify(busyState().snapshot()));
  assertCode(() => MetadataState.fromSnapshot({ ...snap, version: 99 }), 'INVALID_ARGUMENT', /version 99 is not supported/);
  const dupChunk = JSON.parse(JSON.stringify(snap));
  dupChunk.garbage.push({ ...dupChunk.garbage[0] });
  assertCode(() => MetadataState.fromSnapshot(dupChunk), 'INVALID_ARGUMENT', /appears twice/);
  const badName = JSON.parse(JSON.stringify(snap));
  badName.root.children[0].name = '..';
  assertCode(() => MetadataState.fromSnapshot(badName), 'INVALID_ARGUMENT', /name "\.\." is not valid/);
  const badSize = JSON.parse(JSON.stringify(snap));
  badSize.root.children.find((c: { name: string }) => c.name === 'home').children[0].children[0].children[0].size = 6;
  assertCode(() => MetadataState.fromSnapshot(badSize), 'INVALID_ARGUMENT', /chunks hold 5 bytes but the file has 6/);
  assertCode(() => MetadataState.fromSnapshot(null), 'INVALID_ARGUMENT');
});

/** A random but valid-looking workload: many entries succeed, some are refused, all are legal JSON. */
function randomWorkload(seed: number, count: number): Entry[] {
  const random = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const dirPath = () => '/' + Array.from({ length: 1 + Math.floor(random() * 2) }, () => pick(['a', 'b'])).join('/');
  const filePath = () => (random() < 0.3 ? '' : dirPath()) + '/' + pick(['f', 'g', 'a']);
  const anyPath = () => (random() < 0.5 ? dirPath() : filePath());
  const hex = () => Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16)).join('');
  const open: Array<{ id: string; path: string; chunks: string[] }> = [];
  const closed: string[] = [];
  const chunkIds: string[] = [];
  const entries: Entry[] = [];
  let t = 0;
  for (let i = 0; i < count; i++) {
    t += 1 + Math.floor(random() * 3);
    const roll = random();
    if (roll < 0.15) entries.push({ type: 'mkdir', path: dirPath(), parents: random() < 0.8, mtime: t });
    else if (roll < 0.3) {
      const u = { id: hex(), path: filePath(), chunks: [] as string[] };
      open.push(u);
      entries.push({ type: 'begin-upload', uploadId: u.id, path: u.path, replication: 2, chunkSize: CHUNK, mtime: t });
    } else if (roll < 0.45 && open.length > 0) {
      const u = pick(open);
      const chunks = Array.from({ length: 1 + Math.floor(random() * 2) }, () => ({ id: hex(), replicas: [pick(KEEPERS)] }));
      u.chunks.push(...chunks.map((c) => c.id));
      chunkIds.push(...chunks.map((c) => c.id));
      entries.push({ type: 'allocate-chunks', uploadId: u.id, chunks, mtime: t });
    } else if (roll < 0.6 && open.length > 0) {
      const u = open.splice(Math.floor(random() * open.length), 1)[0];
      closed.push(u.id);
      // Usually every chunk; sometimes a prefix, leaving allocations to collect.
      const ids = random() < 0.7 ? u.chunks : u.chunks.slice(0, Math.floor(random() * (u.chunks.length + 1)));
      const size = ids.length === 0 ? 0 : ids.length * CHUNK - Math.floor(random() * CHUNK);
      entries.push({ type: 'commit-file', uploadId: u.id, path: u.path, size, chunks: layout(ids, size, CHUNK, ['k1']), mtime: t });
      if (random() < 0.2) open.push(u); // a retried commit
    } else if (roll < 0.65 && (open.length > 0 || closed.length > 0)) {
      const id = open.length > 0 && random() < 0.8 ? open.splice(Math.floor(random() * open.length), 1)[0].id : pick(closed);
      entries.push({ type: 'abort-upload', uploadId: id, mtime: t });
    } else if (roll < 0.75) {
      entries.push({ type: 'remove', path: anyPath(), recursive: random() < 0.5, mtime: t });
    } else if (roll < 0.87) {
      entries.push({ type: 'rename', src: anyPath(), dst: anyPath(), mtime: t });
    } else if (roll < 0.92 && chunkIds.length > 0) {
      entries.push({ type: 'update-replicas', chunkId: pick(chunkIds), add: [pick(KEEPERS)], remove: [], mtime: 2 });
    } else if (roll < 0.97 && chunkIds.length > 0) {
      entries.push({ type: 'forget-garbage', chunks: [{ id: pick(chunkIds), keepers: [pick(KEEPERS)] }] });
    } else {
      entries.push({ type: 'register-keeper', id: pick(KEEPERS), address: `h${i}:1`, zone: pick(['z0', 'z1']), capacity: i });
    }
  }
  return entries;
}

function replay(state: MetadataState, entries: readonly Entry[]): string[] {
  return entries.map((e) => {
    try {
      return 'ok ' + JSON.stringify(state.apply(e));
    } catch (err) {
      if (!(err instanceof DfsError)) throw err;
      return `${err.code} ${err.message}`;
    }
  });
}

test('the same entries give byte-identical snapshots and identical results on every replica', () => {
  const seed = Number(process.env.DFS_FUZZ_SEED ?? 20240601);
  for (let round = 0; round < 20; round++) {
    const entries = randomWorkload(seed + round, 400);
    const a = freshState();
    const b = freshState();
    const resultsA = replay(a, entries);
    const resultsB = replay(b, entries);
    assert.deepEqual(resultsA, resultsB, `seed=${seed + round}`);
    assert.equal(JSON.stringify(a.snapshot()), JSON.stringify(b.snapshot()), `seed=${seed + round}`);
    // A replica that joined from a checkpoint half-way ends in the same place.
    const c = freshState();
    replay(c, entries.slice(0, 200));
    const d = MetadataState.fromSnapshot(JSON.parse(JSON.stringify(c.snapshot())));
    const resultsD = replay(d, entries.slice(200));
    assert.deepEqual(resultsD, resultsA.slice(200), `seed=${seed + round}`);
    assert.equal(JSON.stringify(d.snapshot()), JSON.stringify(a.snapshot()), `seed=${seed + round}`);
    assert.ok(resultsA.some((r) => r.startsWith('ok')) && resultsA.some((r) => !r.startsWith('ok')), 'the workload mixes accepted and refused entries');
  }
});

test('no chunk is ever lost track of: every allocated id is in exactly one file, upload or garbage record', () => {
  // A chunk in none of them leaks disk forever; a chunk in two could be deleted while a file needs it.
  const seed = Number(process.env.DFS_FUZZ_SEED ?? 777);
  // Without forget-garbage, which legitimately ends a chunk's record once keepers deleted it.
  const entries = randomWorkload(seed, 2000).filter((e) => e.type !== 'forget-garbage');
  const s = freshState();
  const allocated = new Set<string>();
  for (const e of entries) {
    try {
      s.apply(e);
      if (e.type === 'allocate-chunks') for (const c of e.chunks) allocated.add(c.id);
    } catch (err) {
      if (!(err instanceof DfsError)) throw err;
    }
  }
  const seen = new Map<string, string>();
  const note = (id: string, where: string) => {
    assert.ok(!seen.has(id), `chunk ${id} is in ${seen.get(id)} and in ${where} (seed=${seed})`);
    seen.set(id, where);
  };
  const snap = s.snapshot();
  let files = 0;
  let dirs = 1;
  let bytes = 0;
  const walk = (dir: (typeof snap)['root'], at: string) => {
    for (const child of dir.children) {
      if (child.type === 'dir') {
        dirs++;
        walk(child, `${at}/${child.name}`);
      } else {
        files++;
        bytes += child.size;
        for (const c of child.chunks) note(c.id, `file ${at}/${child.name}`);
      }
    }
  };
  walk(snap.root, '');
  assert.deepEqual(
    { files, dirs, bytes },
    { files: s.stats().files, dirs: s.stats().dirs, bytes: s.stats().bytes },
    'the running counts match the tree',
  );
  for (const u of snap.uploads) for (const c of u.chunks) note(c.id, `upload ${u.uploadId}`);
  for (const g of snap.garbage) note(g.id, 'garbage');
  assert.deepEqual(new Set(seen.keys()), allocated, `seed=${seed}`);
});
