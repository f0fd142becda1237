// A keeper is where a chunk becomes durable: these tests run real keepers on loopback with a fake
// master and check that a pipeline write lands intact on every hop or says exactly which hop failed,
// that back-pressure from a slow hop reaches the writer, and that the master hears from each keeper.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  RpcServer, callForBuffer, listen, parseAddress, type Address, type WireServer,
} from '../src/transport/index.js';
import { decodeRecord, encodeRecord, type Decoded } from '../src/wire/fields.js';
import { DfsError } from '../src/wire/errors.js';
import { HEARTBEAT, READ_CHUNK, WRITE_CHUNK } from '../src/protocol/ops.js';
import { startKeeper } from '../src/keeper/keeper.js';
import { WorkerPool } from '../src/workers/pool.js';
import { connectTo, startTestKeeper, tempDir, type Cleanup } from './helpers/keeper-fixtures.js';
import { storedReplica } from './helpers/stored-replicas.js';

type T = Cleanup;
type Heartbeat = Decoded<typeof HEARTBEAT.request>;

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const newId = (): string => randomBytes(16).toString('hex');
const quiet = () => {};

/** A master that only answers HEARTBEAT and remembers every one. */
async function fakeMaster(t: T, port = 0): Promise<{ address: Address; beats: Heartbeat[]; server: WireServer }> {
  const beats: Heartbeat[] = [];
  const rpc = new RpcServer().register(HEARTBEAT, ({ request }) => {
    beats.push(request);
    return { response: { intervalMs: 0 } };
  });
  const server = await listen({ host: '127.0.0.1', port }, (conn) => rpc.serve(conn));
  t.after(() => server.close());
  return { address: server.address, beats, server };
}

const keeper = startTestKeeper;
const client = connectTo;

/** A port nobody listens on. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function readChunk(t: T, address: string, chunkId: string) {
  return callForBuffer(await client(t, address), READ_CHUNK, { chunkId });
}

test('heartbeats reach the master with the keeper id, advertised address, zone and space', async (t) => {
  const master = await fakeMaster(t);
  const k = await keeper(t, master.address, { zone: 'rack-a', capacity: 1 << 30 });
  await waitFor('two heartbeats', () => master.beats.filter((b) => b.keeperId === k.id).length >= 2);
  const beat = master.beats.find((b) => b.keeperId === k.id)!;
  assert.match(k.id, /^[0-9a-f]{32}$/);
  assert.equal(beat.address, k.address);
  assert.match(k.address, /^127\.0\.0\.1:\d+$/);
  assert.notEqual(parseAddress(k.address).port, 0);
  assert.equal(beat.zone, 'rack-a');
  assert.equal(beat.capacity, 1 << 30);
  assert.equal(beat.used, 0);
  assert.equal(beat.chunks, 0);
  assert.equal(beat.load, 0);
  assert.equal(beat.acceptingWrites, true);

  const data = randomBytes(100_000);
  const { response } = await callForBuffer(await client(t, k.address), WRITE_CHUNK,
    { chunkId: newId(), size: data.length, sha256: sha(data), downstream: [] }, { body: data });
  assert.equal(response.acks[0]!.status, 'NO_ERROR');
  const seen = master.beats.length;
  await waitFor('a heartbeat after the write', () => master.beats.length > seen + 1);
  const last = master.beats.at(-1)!;
  assert.equal(last.used, data.length);
  assert.equal(last.chunks, 1);
});

test('without a capacity the keeper reports the disk: free space plus what it stores', async (t) => {
  const master = await fakeMaster(t);
  const k = await keeper(t, master.address);
  const report = await k.report();
  assert.ok(report.capacity > 0, 'disk capacity is reported');
  assert.equal(report.used, 0);
  assert.equal(report.zone, '');
});

test('a full keeper stops accepting writes in its heartbeat and refuses with NO_SPACE', async (t) => {
  const master = await fakeMaster(t);
  const k = await keeper(t, master.address, { capacity: 1000 });
  const conn = await client(t, k.address);
  const data = randomBytes(1000);
  const ok = await callForBuffer(conn, WRITE_CHUNK, { chunkId: newId(), size: 1000, sha256: sha(data), downstream: [] }, { body: data });
  assert.equal(ok.response.acks[0]!.status, 'NO_ERROR');
  assert.equal((await k.report()).acceptingWrites, false);
  const more = randomBytes(10);
  const full = await callForBuffer(conn, WRITE_CHUNK, { chunkId: newId(), size: 10, sha256: sha(more), downstream: [] }, { body: more });
  assert.equal(full.response.acks[0]!.status, 'NO_SPACE');
});

test('heartbeats resume once an unreachable master comes up, with one log line per change', async (t) => {
  const port = await deadPort();
  const lines: string[] = [];
  await keeper(t, { host: '127.0.0.1', port }, { log: (l) => lines.push(l) });
  await sleep(400);
  const master = await fakeMaster(t, port);
  await waitFor('a heartbeat after the master came up', () => master.beats.length > 0, 5000);
  assert.equal(lines.filter((l) => l.includes('cannot reach master')).length, 1, lines.join('\n'));
  await waitFor('the connected line', () => lines.some((l) => l.includes('connected to master')));
  await master.server.close();
  await waitFor('the lost line', () => lines.some((l) => l.includes('lost master')));
  assert.equal(lines.filter((l) => l.includes('lost master')).length, 1);
});

test('a chunk written through a 3-hop pipeline is durable and identical on every hop', async (t) => {
  const master = await fakeMaster(t);
  const ks = [await keeper(t, master.address), await keeper(t, master.address), await keeper(t, master.address)];
  const data = randomBytes(5 * 1024 * 1024 + 123);
  const chunkId = newId();
  const { response } = await callForBuffer(await client(t, ks[0]!.address), WRITE_CHUNK,
    { chunkId, size: data.length, sha256: sha(data), downstream: [ks[1]!.address, ks[2]!.address] }, { body: data });
  assert.deepEqual(response.acks.map((a) => [a.keeperId, a.address, a.status]), ks.map((k) => [k.id, k.address, 'NO_ERROR']));
  for (const k of ks) {
    const read = await readChunk(t, k.address, chunkId);
    assert.equal(read.response.size, data.length);
    assert.equal(read.response.sha256, sha(data));
    assert.ok(read.body.equals(data), `bytes on ${k.address} match`);
  }
});

test('a wrong sha256 is reported as CHECKSUM_MISMATCH by every hop and leaves nothing readable', async (t) => {
  const master = await fakeMaster(t);
  const ks = [await keeper(t, master.address), await keeper(t, master.address), await keeper(t, master.address)];
  const data = randomBytes(300_000);
  const chunkId = newId();
  const { response } = await callForBuffer(await client(t, ks[0]!.address), WRITE_CHUNK,
    { chunkId, size: data.length, sha256: sha(Buffer.from('something else')), downstream: [ks[1]!.address, ks[2]!.address] }, { body: data });
  assert.deepEqual(response.acks.map((a) => a.status), ['CHECKSUM_MISMATCH', 'CHECKSUM_MISMATCH', 'CHECKSUM_MISMATCH']);
  for (const k of ks) {
    await assert.rejects(readChunk(t, k.address, chunkId), { code: 'NOT_FOUND' });
    assert.equal(k.store.reserved(), 0);
  }
});

test('a body shorter or longer than the declared size fails on every hop', async (t) => {
  const master = await fakeMaster(t);
  const ks = [await keeper(t, master.address), await keeper(t, master.address)];
  const conn = await client(t, ks[0]!.address);
  const data = randomBytes(200_000);
  for (const size of [data.length + 1, data.length - 1]) {
    const chunkId = newId();
    const { response } = await callForBuffer(conn, WRITE_CHUNK,
      { chunkId, size, sha256: sha(data), downstream: [ks[1]!.address] }, { body: data });
    assert.deepEqual(response.acks.map((a) => a.status), ['CHECKSUM_MISMATCH', 'CHECKSUM_MISMATCH'], `declared ${size}`);
    for (const k of ks) await assert.rejects(readChunk(t, k.address, chunkId), { code: 'NOT_FOUND' });
  }
});

test('a dead downstream keeper is named in the acks while the first hop is still durable', async (t) => {
  const master = await fakeMaster(t);
  const [k1, k3] = [await keeper(t, master.address), await keeper(t, master.address)];
  const dead = `127.0.0.1:${await deadPort()}`;
  const data = randomBytes(200_000);
  const chunkId = newId();
  const { response } = await callForBuffer(await client(t, k1.address), WRITE_CHUNK,
    { chunkId, size: data.length, sha256: sha(data), downstream: [dead, k3.address] }, { body: data });
  assert.equal(response.acks.length, 3);
  assert.deepEqual(response.acks[0], { keeperId: k1.id, address: k1.address, status: 'NO_ERROR' });
  assert.equal(response.acks[1]!.address, dead);
  assert.equal(response.acks[1]!.status, 'UNAVAILABLE');
  assert.match(response.acks[1]!.message!, /cannot reach keeper/);
  assert.equal(response.acks[2]!.address, k3.address);
  assert.equal(response.acks[2]!.status, 'PIPELINE_FAILED');
  assert.ok((await readChunk(t, k1.address, chunkId)).body.equals(data));
  await assert.rejects(readChunk(t, k3.address, chunkId), { code: 'NOT_FOUND' });
});

test('a downstream keeper that dies mid-write is reported with its error; the hop before it succeeds', async (t) => {
  const master = await fakeMaster(t);
  const k1 = await keeper(t, master.address);
  // A fake keeper that takes some bytes and then drops the connection.
  const rpc = new RpcServer().register(WRITE_CHUNK, async ({ body, connection }) => {
    let got = 0;
    for await (const piece of body) {
      got += (piece as Buffer).length;
      if (got > 1024 * 1024) connection.destroy(new DfsError('INTERNAL_ERROR', 'crashed'));
    }
    return { response: { acks: [] } };
  });
  const fake = await listen({ host: '127.0.0.1', port: 0 }, (conn) => rpc.serve(conn));
  t.after(() => fake.close());
  const fakeAddress = `127.0.0.1:${fake.address.port}`;
  const data = randomBytes(4 * 1024 * 1024);
  const chunkId = newId();
  const { response } = await callForBuffer(await client(t, k1.address), WRITE_CHUNK,
    { chunkId, size: data.length, sha256: sha(data), downstream: [fakeAddress] }, { body: data });
  assert.equal(response.acks[0]!.status, 'NO_ERROR');
  assert.equal(response.acks[1]!.address, fakeAddress);
  assert.notEqual(response.acks[1]!.status, 'NO_ERROR');
  assert.ok((await readChunk(t, k1.address, chunkId)).body.equals(data));
});

test('an upstream reset mid-body aborts the write on every hop', async (t) => {
  const master = await fakeMaster(t);
  const ks = [await keeper(t, master.address), await keeper(t, master.address)];
  const conn = await client(t, ks[0]!.address);
  const chunkId = newId();
  const data = randomBytes(2 * 1024 * 1024);
  const header = encodeRecord(WRITE_CHUNK.request, { chunkId, size: data.length, sha256: sha(data), downstream: [ks[1]!.address] });
  const stream = conn.openStream(WRITE_CHUNK.op, WRITE_CHUNK.version, header);
  stream.on('error', () => {});
  stream.write(data.subarray(0, 512 * 1024));
  await waitFor('the second hop to start', () => ks[1]!.store.reserved() > 0);
  stream.destroy(new DfsError('CANCEL', 'client gave up'));
  await waitFor('every hop to drop the write', () => ks.every((k) => k.store.reserved() === 0 && k.load === 0));
  for (const k of ks) assert.equal(k.store.has(chunkId), false);
});

test('an upstream reset while the keeper is still opening the write is not missed', async (t) => {
  // The reset lands while the keeper waits for its worker to create the temp file; the body's
  // 'error' has come and gone by the time it starts reading, and must not leave the write hanging.
  const master = await fakeMaster(t);
  const pool = new WorkerPool({ size: 1 });
  t.after(() => pool.close());
  const k = await keeper(t, master.address, { pool });
  const conn = await client(t, k.address);
  const big = randomBytes(32 * 1024 * 1024);
  for (let i = 0; i < 3; i++) {
    const busy = pool.sha256(big); // holds the only worker
    const data = randomBytes(1000);
    const header = encodeRecord(WRITE_CHUNK.request, { chunkId: newId(), size: data.length, sha256: sha(data), downstream: [] });
    const stream = conn.openStream(WRITE_CHUNK.op, WRITE_CHUNK.version, header);
    stream.on('error', () => {});
    await waitFor('the keeper to take the request', () => k.load === 1);
    stream.destroy(new DfsError('CANCEL', 'client gave up at once'));
    await busy;
    await waitFor('the write to be dropped', () => k.store.reserved() === 0 && k.load === 0, 3000);
  }
});

test('an upstream that stops sending is cut off after the stall deadline and its write dropped', async (t) => {
  const master = await fakeMaster(t);
  const k = await keeper(t, master.address, { stallMs: 200 });
  const conn = await client(t, k.address);
  const data = randomBytes(100_000);
  const header = encodeRecord(WRITE_CHUNK.request, { chunkId: newId(), size: data.length, sha256: sha(data), downstream: [] });
  const stream = conn.openStream(WRITE_CHUNK.op, WRITE_CHUNK.version, header);
  stream.on('error', () => {});
  stream.write(data.subarray(0, 1000));
  await assert.rejects(stream.waitForReply(), { code: 'DEADLINE_EXCEEDED' });
  await waitFor('the write to be dropped', () => k.store.reserved() === 0 && k.load === 0);
});

test('a downstream that stops reading is reported with DEADLINE_EXCEEDED; the hop before it succeeds', async (t) => {
  const master = await fakeMaster(t);
  const k1 = await keeper(t, master.address, { stallMs: 300 });
  // Takes the request and never reads its body: its stream window fills and stays full.
  const rpc = new RpcServer().register(WRITE_CHUNK, ({ signal }) => new Promise((_, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  }));
  const stuckId = newId();
  const stuck = await listen({ host: '127.0.0.1', port: 0, agent: `dfs-keeper ${stuckId}` }, (conn) => rpc.serve(conn));
  t.after(() => stuck.close());
  const stuckAddress = `127.0.0.1:${stuck.address.port}`;
  const data = randomBytes(4 * 1024 * 1024);
  const chunkId = newId();
  const { response } = await callForBuffer(await client(t, k1.address), WRITE_CHUNK,
    { chunkId, size: data.length, sha256: sha(data), downstream: [stuckAddress] }, { body: data });
  assert.equal(response.acks[0]!.status, 'NO_ERROR');
  assert.deepEqual([response.acks[1]!.address, response.acks[1]!.status], [stuckAddress, 'DEADLINE_EXCEEDED']);
  assert.equal(response.acks[1]!.keeperId, stuckId, 'the failed keeper is named by the id in its HELLO');
  assert.ok((await readChunk(t, k1.address, chunkId)).body.equals(data));
});

test('writing a chunk again with the same content succeeds on every hop (a retried pipeline)', async (t) => {
  const master = await fakeMaster(t);
  const ks = [await keeper(t, master.address), await keeper(t, master.address)];
  const conn = await client(t, ks[0]!.address);
  const data = randomBytes(70_000);
  const request = { chunkId: newId(), size: data.length, sha256: sha(data), downstream: [ks[1]!.address] };
  for (let i = 0; i < 2; i++) {
    const { response } = await callForBuffer(conn, WRITE_CHUNK, request, { body: data });
    assert.deepEqual(response.acks.map((a) => a.status), ['NO_ERROR', 'NO_ERROR']);
  }
  const other = randomBytes(70_000);
  const { response } = await callForBuffer(conn, WRITE_CHUNK, { ...request, sha256: sha(other) }, { body: other });
  assert.deepEqual(response.acks.map((a) => a.status), ['ALREADY_EXISTS', 'ALREADY_EXISTS']);
});

test('a slow downstream pushes back on the writer, and the bytes between them stay bounded', async (t) => {
  // If a hop buffered instead of pushing back, a slow disk or link anywhere in the pipeline would
  // make the first keeper hold whole chunks in memory.
  const master = await fakeMaster(t);
  const k1 = await keeper(t, master.address);
  let consumed = 0;
  const rpc = new RpcServer().register(WRITE_CHUNK, async ({ body }) => {
    for await (const piece of body) {
      consumed += (piece as Buffer).length;
      await sleep(2);
    }
    return { response: { acks: [{ keeperId: 'slow', address: 'slow', status: 'NO_ERROR' }] } };
  });
  const slow = await listen({ host: '127.0.0.1', port: 0 }, (conn) => rpc.serve(conn));
  t.after(() => slow.close());

  const conn = await client(t, k1.address);
  const data = randomBytes(16 * 1024 * 1024);
  const chunkId = newId();
  const header = encodeRecord(WRITE_CHUNK.request, {
    chunkId, size: data.length, sha256: sha(data), downstream: [`127.0.0.1:${slow.address.port}`],
  });
  const stream = conn.openStream(WRITE_CHUNK.op, WRITE_CHUNK.version, header);
  stream.on('error', () => {});
  const reply = stream.waitForReply();
  let written = 0;
  let refusals = 0;
  let maxLag = 0;
  let maxLoad = 0;
  const piece = 64 * 1024;
  while (written < data.length) {
    const ok = stream.write(data.subarray(written, written + piece));
    written += piece;
    maxLag = Math.max(maxLag, written - consumed);
    maxLoad = Math.max(maxLoad, k1.load);
    if (!ok) {
      refusals++;
      await new Promise((resolve) => stream.once('drain', resolve));
    }
  }
  stream.end();
  const acks = decodeRecord(WRITE_CHUNK.response, await reply).acks;
  stream.resume();
  assert.deepEqual(acks.map((a) => a.status), ['NO_ERROR', 'NO_ERROR'], JSON.stringify(acks));
  assert.ok(refusals > 100, `write() returned false ${refusals} times`);
  // Stream windows of 1 MiB per hop plus the writable buffers: a few MiB, never the 16 MiB chunk.
  assert.ok(maxLag <= 4 * 1024 * 1024, `writer ran ${maxLag} bytes ahead of the slow keeper`);
  assert.equal(maxLoad, 1, 'the write in flight counts as load');
  assert.equal(k1.load, 0);
});

test('READ_CHUNK of a chunk this keeper does not hold is NOT_FOUND', async (t) => {
  const master = await fakeMaster(t);
  const k = await keeper(t, master.address);
  await assert.rejects(readChunk(t, k.address, newId()), { code: 'NOT_FOUND' });
  await assert.rejects(readChunk(t, k.address, 'not-an-id'), { code: 'INVALID_ARGUMENT' });
});

test('a replica damaged on disk is never served: CHECKSUM_MISMATCH, and it is quarantined', async (t) => {
  const master = await fakeMaster(t);
  const k = await keeper(t, master.address);
  const data = randomBytes(50_000);
  const chunkId = newId();
  await callForBuffer(await client(t, k.address), WRITE_CHUNK, { chunkId, size: data.length, sha256: sha(data), downstream: [] }, { body: data });
  const { open } = await import('node:fs/promises');
  const r = await storedReplica(k.store.dir, chunkId);
  const fh = await open(r.file, 'r+');
  await fh.write(Buffer.from([0xff ^ data[1000]!]), 0, 1, r.dataOffset + 1000);
  await fh.close();
  await assert.rejects(readChunk(t, k.address, chunkId), { code: 'CHECKSUM_MISMATCH' });
  assert.equal(k.store.has(chunkId), false);
});

test('close stops heartbeats and sends GOAWAY to connected peers', async (t) => {
  const master = await fakeMaster(t);
  const k = await keeper(t, master.address);
  await waitFor('a heartbeat', () => master.beats.length > 0);
  const conn = await client(t, k.address);
  let goAway = false;
  conn.on('goaway', () => {
    goAway = true;
  });
  await k.close();
  assert.ok(goAway, 'the client was told with GOAWAY');
  const beats = master.beats.length;
  await sleep(200);
  assert.equal(master.beats.length, beats, 'no heartbeat after close');
});

test('the keeper id survives a restart on the same data directory', async (t) => {
  const master = await fakeMaster(t);
  const dataDir = await tempDir(t);
  const first = await startKeeper({ master: master.address, listen: { host: '127.0.0.1', port: 0 }, dataDir, log: quiet });
  const id = first.id;
  await first.close();
  assert.equal((await readFile(join(dataDir, 'KEEPER_ID'), 'utf8')).trim(), id);
  const second = await keeper(t, master.address, { dataDir });
  assert.equal(second.id, id);
  const other = await keeper(t, master.address);
  assert.notEqual(other.id, id);
});
