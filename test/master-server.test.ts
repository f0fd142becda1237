// The master over the wire: namespace operations, placement from heartbeats, and a journal that
// brings every acknowledged change back after a restart.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMaster } from '../src/master/server.js';
import { call, callForBuffer, connect, parseAddress, readAll } from '../src/transport/index.js';
import { decodeRecord, encodeRecord } from '../src/wire/index.js';
import {
  ALLOCATE_CHUNK, BALANCE, BEGIN_UPLOAD, CHUNK_REPORT, CHUNKS_BODY, COMMIT, FSCK, HEARTBEAT, KEEPER_ADMIN, LIST, LIST_BODY, MKDIR,
  REPORT_CORRUPT, STAT, STATUS, STATUS_BODY,
} from '../src/protocol/ops.js';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-master-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const heartbeat = (id: string, port: number, zone = 'z') => ({
  keeperId: id, address: `127.0.0.1:${port}`, zone, capacity: 1 << 30, used: 0, chunks: 0, load: 0, acceptingWrites: true,
});

test('a committed file survives a master restart, with its chunks and replicas', async (t) => {
  const dir = await tempDir(t);
  let master = await startMaster({ port: 0, dataDir: dir });
  let conn = await connect(parseAddress(master.address));
  for (let i = 0; i < 3; i++) await call(conn, HEARTBEAT, heartbeat(`k${i}`, 9000 + i, `z${i}`));
  await call(conn, MKDIR, { path: '/data/deep', parents: true });
  const { response: up } = await call(conn, BEGIN_UPLOAD, { path: '/data/deep/f', replication: 3, chunkSize: 1024 });
  const { response: alloc } = await call(conn, ALLOCATE_CHUNK, { uploadId: up.uploadId, size: 1000 });
  assert.equal(alloc.keepers.length, 3);
  assert.equal(new Set(alloc.keepers.map((k) => k.id)).size, 3, 'replicas on distinct keepers');
  const sha = 'a'.repeat(64);
  const body = encodeRecord(CHUNKS_BODY, { chunks: [{ id: alloc.chunkId, size: 1000, sha256: sha, replicas: alloc.keepers.map((k) => ({ ...k, alive: true })) }] });
  await call(conn, COMMIT, { uploadId: up.uploadId, size: 1000 }, { body });
  conn.destroy();
  await master.close();

  master = await startMaster({ port: 0, dataDir: dir });
  conn = await connect(parseAddress(master.address));
  const st = await call(conn, STAT, { path: '/data/deep/f' });
  assert.equal(st.response.size, 1000);
  const chunks = decodeRecord(CHUNKS_BODY, await readAll(st.body, 1 << 20)).chunks;
  assert.equal(chunks[0]!.id, alloc.chunkId);
  assert.equal(chunks[0]!.sha256, sha);
  assert.deepEqual(chunks[0]!.replicas.map((r) => r.id).sort(), ['k0', 'k1', 'k2']);
  assert.ok(chunks[0]!.replicas.every((r) => !r.alive), 'after a restart keepers are dead until they report');
  const ls = await callForBuffer(conn, LIST, { path: '/data' });
  assert.deepEqual(decodeRecord(LIST_BODY, ls.body).entries.map((e) => e.name), ['deep']);
  conn.destroy();
  await master.close();
});

test('a torn journal tail is dropped; a damaged checkpoint stops the start, naming the file', async (t) => {
  const dir = await tempDir(t);
  let master = await startMaster({ port: 0, dataDir: dir });
  let conn = await connect(parseAddress(master.address));
  await call(conn, MKDIR, { path: '/a', parents: false });
  await call(conn, MKDIR, { path: '/b', parents: false });
  conn.destroy();
  await master.close();
  // A clean shutdown leaves a checkpoint and an empty journal segment after it.
  const segment = (await readdir(dir)).find((n) => /^journal-\d+\.log$/.test(n))!;
  await appendFile(join(dir, segment), '0123456789abcdef {"type":"mkd');
  master = await startMaster({ port: 0, dataDir: dir });
  conn = await connect(parseAddress(master.address));
  const ls = await callForBuffer(conn, LIST, { path: '/' });
  assert.deepEqual(decodeRecord(LIST_BODY, ls.body).entries.map((e) => e.name), ['a', 'b']);
  conn.destroy();
  await master.close();

  const checkpoint = join(dir, (await readdir(dir)).find((n) => n.endsWith('.ckpt'))!);
  const bytes = await readFile(checkpoint);
  bytes[20] ^= 0xff;
  await writeFile(checkpoint, bytes);
  await assert.rejects(startMaster({ port: 0, dataDir: dir }), (err: { code: string; message: string }) =>
    err.code === 'IO_ERROR' && err.message.includes(checkpoint) && /damaged/.test(err.message));
});

test('namespace errors reach the client with their codes', async (t) => {
  const dir = await tempDir(t);
  const master = await startMaster({ port: 0, dataDir: dir });
  const conn = await connect(parseAddress(master.address));
  await assert.rejects(call(conn, MKDIR, { path: '/x/y', parents: false }), { code: 'NOT_FOUND' });
  await assert.rejects(call(conn, STAT, { path: '/nope' }), { code: 'NOT_FOUND' });
  await assert.rejects(call(conn, MKDIR, { path: '/a/../b', parents: true }), { code: 'INVALID_ARGUMENT' });
  // No keepers: the first chunk cannot be placed with the upload, and ALLOCATE_CHUNK says why.
  const { response: up } = await call(conn, BEGIN_UPLOAD, { path: '/f', replication: 3, chunkSize: 1024, firstChunk: 10 });
  assert.equal(up.chunkId, undefined);
  assert.equal(up.keepers, undefined);
  await assert.rejects(call(conn, ALLOCATE_CHUNK, { uploadId: up.uploadId, size: 10 }), { code: 'NOT_ENOUGH_KEEPERS' });
  conn.destroy();
  await master.close();
});

test('a keeper that stops heartbeating is reported dead and gets no new chunks', async (t) => {
  const dir = await tempDir(t);
  const master = await startMaster({ port: 0, dataDir: dir, deadAfterMs: 300 });
  const conn = await connect(parseAddress(master.address));
  for (let i = 0; i < 3; i++) await call(conn, HEARTBEAT, heartbeat(`k${i}`, 9100 + i));
  await new Promise((r) => setTimeout(r, 400));
  await call(conn, HEARTBEAT, heartbeat('k0', 9100));
  await call(conn, HEARTBEAT, heartbeat('k1', 9101));
  const status = await callForBuffer(conn, STATUS, {});
  const keepers = decodeRecord(STATUS_BODY, status.body).keepers;
  assert.deepEqual(keepers.map((k) => [k.id, k.alive]).sort(), [['k0', true], ['k1', true], ['k2', false]]);
  const { response: up } = await call(conn, BEGIN_UPLOAD, { path: '/f', replication: 3, chunkSize: 1024 });
  const { response: alloc } = await call(conn, ALLOCATE_CHUNK, { uploadId: up.uploadId, size: 10 });
  assert.deepEqual(alloc.keepers.map((k) => k.id).sort(), ['k0', 'k1']);
  conn.destroy();
  await master.close();
});

test('BEGIN_UPLOAD with firstChunk places the first chunk in the same round trip; it commits and survives a restart', async (t) => {
  const dir = await tempDir(t);
  let master = await startMaster({ port: 0, dataDir: dir });
  let conn = await connect(parseAddress(master.address));
  for (let i = 0; i < 3; i++) await call(conn, HEARTBEAT, heartbeat(`k${i}`, 9200 + i, `z${i}`));
  const { response: up } = await call(conn, BEGIN_UPLOAD, { path: '/one', replication: 2, chunkSize: 1024, firstChunk: 700 });
  assert.match(up.chunkId!, /^[0-9a-f]{32}$/);
  assert.equal(up.keepers!.length, 2);
  assert.equal(new Set(up.keepers!.map((k) => k.id)).size, 2, 'replicas on distinct keepers');
  const body = encodeRecord(CHUNKS_BODY, { chunks: [{ id: up.chunkId!, size: 700, sha256: 'b'.repeat(64), replicas: up.keepers!.map((k) => ({ ...k, alive: true })) }] });
  await call(conn, COMMIT, { uploadId: up.uploadId, size: 700 }, { body });
  conn.destroy();
  await master.close();

  master = await startMaster({ port: 0, dataDir: dir });
  conn = await connect(parseAddress(master.address));
  const st = await call(conn, STAT, { path: '/one' });
  const chunks = decodeRecord(CHUNKS_BODY, await readAll(st.body, 1 << 20)).chunks;
  assert.equal(chunks[0]!.id, up.chunkId);
  assert.deepEqual(chunks[0]!.replicas.map((r) => r.id).sort(), up.keepers!.map((k) => k.id).sort());
  conn.destroy();
  await master.close();
});

test('an upload creates its missing parent directories, as file creation does elsewhere', async (t) => {
  const dir = await tempDir(t);
  const master = await startMaster({ port: 0, dataDir: dir });
  const conn = await connect(parseAddress(master.address));
  await call(conn, BEGIN_UPLOAD, { path: '/new/deep/file', replication: 1, chunkSize: 1024 });
  const st = await call(conn, STAT, { path: '/new/deep' });
  assert.equal(st.response.type, 2);
  conn.destroy();
  await master.close();
});

test('names with control characters are refused, and a long path\'s error says why first', async (t) => {
  const dir = await tempDir(t);
  const master = await startMaster({ port: 0, dataDir: dir });
  const conn = await connect(parseAddress(master.address));
  await assert.rejects(call(conn, MKDIR, { path: '/new\nline', parents: false }), (err: { code: string; message: string }) =>
    err.code === 'INVALID_ARGUMENT' && /control character U\+000A/.test(err.message));
  await assert.rejects(call(conn, MKDIR, { path: `/${'z'.repeat(5000)}`, parents: false }), (err: { code: string; message: string }) =>
    err.code === 'INVALID_ARGUMENT' && /5001 bytes long, more than the limit of 4096/.test(err.message));
  conn.destroy();
  await master.close();
});

test('a second master on the same data directory is refused while the first runs', async (t) => {
  const dir = await tempDir(t);
  const first = await startMaster({ port: 0, dataDir: dir });
  await assert.rejects(startMaster({ port: 0, dataDir: dir }), (err: { code: string; message: string }) =>
    err.code === 'UNAVAILABLE' && /already open in this process|locked by process/.test(err.message));
  await first.close();
  const again = await startMaster({ port: 0, dataDir: dir });
  await again.close();
});

test('the repair and health operations refuse bad requests with their codes, and the master stays up', async (t) => {
  const dir = await tempDir(t);
  const master = await startMaster({ port: 0, dataDir: dir });
  t.after(() => master.close());
  const conn = await connect(parseAddress(master.address));
  t.after(() => conn.destroy());
  await call(conn, HEARTBEAT, heartbeat('keeper-one', 9100));
  await assert.rejects(call(conn, KEEPER_ADMIN, { keeperId: 'keeper-one', mode: 9 }), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(call(conn, KEEPER_ADMIN, { keeperId: 'nobody-at-all', mode: 3 }), { code: 'NOT_FOUND' });
  await assert.rejects(call(conn, KEEPER_ADMIN, { keeperId: 'kee', mode: 3 }), /prefix of at least 4 characters/);
  await assert.rejects(call(conn, KEEPER_ADMIN, { keeperId: 'keeper-one', mode: 4 }), /is alive: stop it/);
  await assert.rejects(call(conn, FSCK, { path: '/nope', all: false }), { code: 'NOT_FOUND' });
  await assert.rejects(call(conn, BALANCE, { thresholdPercent: 150 }), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(call(conn, CHUNK_REPORT, { keeperId: 'stranger', final: true }, { body: Buffer.alloc(0) }), { code: 'NOT_FOUND' });
  // A body that is not a CHUNK_IDS_BODY is refused; so is a heartbeat body that does not decode.
  await assert.rejects(call(conn, CHUNK_REPORT, { keeperId: 'keeper-one', final: true }, { body: Buffer.from([0, 1, 0, 0, 0, 9, 1]) }));
  await assert.rejects(call(conn, HEARTBEAT, heartbeat('keeper-one', 9100), { body: Buffer.from('not a record') }));
  // A reader's corruption report about an unknown chunk changes nothing and is not an error.
  await call(conn, REPORT_CORRUPT, { chunkId: 'f'.repeat(32), keeperId: 'keeper-one' });
  const { response } = await callForBuffer(conn, STATUS, {});
  assert.equal(response.underReplicated, 0);
  const ok = await callForBuffer(conn, KEEPER_ADMIN, { keeperId: 'keep', mode: 2, durationMs: 60_000 });
  assert.equal(ok.response.keeperId, 'keeper-one', 'a unique prefix names the keeper');
});
