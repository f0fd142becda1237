// Real `dfs` processes on real sockets: a master and three keepers, files written and read back
// through the client API and through the `dfs` command. What users rely on most is that the bytes
// they get are the bytes they put, also after a keeper dies or a replica rots on disk.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DfsError, type DfsClient } from '../src/index.js';
import { createRng, fuzzSeed } from './helpers/fuzz.js';
import { runDfs, startCluster, waitFor, type Cluster, type DfsProcess } from './helpers/cluster.js';
import { hashOf, randomPieces, readAllOf, sha } from './helpers/data.js';
import { storedReplicas } from './helpers/stored-replicas.js';

const rng = createRng(fuzzSeed());

let cluster: Cluster;
let dir: string;
let master: DfsProcess;
let keepers: DfsProcess[];
let client: DfsClient;

/** Runs the `dfs` command against this cluster's master. */
const dfs = (args: string[]) => runDfs(args, master.address);

before(async () => {
  cluster = await startCluster({ keepers: 3 });
  ({ dir, master, keepers, client } = cluster);
});

after(() => cluster?.stop());

test('every size around three chunk sizes, 100 MiB included, round-trips byte for byte, all at once', async () => {
  // The sizes where chunking goes wrong: empty, tiny, one short of a chunk, exactly one, one over,
  // several plus an odd tail, and a large file; with small, medium and the default chunk size.
  const chunkSizes = [256 * 1024, 1024 * 1024, 8 * 1024 * 1024];
  const cases = chunkSizes.flatMap((chunkSize) =>
    [0, 1, 1024, chunkSize - 1, chunkSize, chunkSize + 1, 3 * chunkSize + 17, 100 * 1024 * 1024].map((size) => ({ chunkSize, size })));
  await Promise.all(cases.map(async ({ chunkSize, size }) => {
    const path = `/sizes/c${chunkSize}/f${size}`;
    const digest = createHash('sha256');
    await client.put(path, Readable.from(randomPieces(size, 1024 * 1024, digest)), { chunkSize });
    const expected = digest.digest('hex');
    const st = await client.stat(path);
    assert.equal(st.size, size, path);
    assert.equal(st.chunks.length, Math.ceil(size / chunkSize), path);
    // Every replica listed was acknowledged durable. Under heavy load a hop may time out and the
    // client writes around it with the minimum of two; the replica audit in e2e-failures checks
    // exactly three on an unhurried cluster.
    for (const c of st.chunks) assert.ok(c.replicas.length >= 2 && c.replicas.length <= 3, `${path}: ${c.replicas.length} replicas`);
    const back = await hashOf(await client.get(path));
    assert.deepEqual(back, { size, sha256: expected }, `${path} came back different`);
  }));
  for (const chunkSize of chunkSizes) {
    const listed = await client.list(`/sizes/c${chunkSize}`);
    assert.equal(listed.length, 8);
    assert.deepEqual(new Set(listed.map((e) => e.chunkSize)), new Set([chunkSize]), 'a listing gives each file its chunk size');
  }
});

test('a file of several default-size chunks round-trips and replaces an older file at the same path', async () => {
  const data = rng.bytes(20 * 1024 * 1024 + 5);
  await client.put('/big.bin', Buffer.from('old'));
  await client.put('/big.bin', data);
  const st = await client.stat('/big.bin');
  assert.equal(st.chunkSize, 8 * 1024 * 1024);
  assert.equal(st.chunks.length, 3);
  assert.equal(sha(await readAllOf(await client.get('/big.bin'))), sha(data));
});

test('the dfs command: mkdir, put, ls, stat, get, cat, mv, rm and status', async () => {
  const local = join(dir, 'local.bin');
  const data = rng.bytes(300_000);
  await writeFile(local, data);

  assert.equal((await dfs(['mkdir', '-p', '/cli/sub'])).code, 0);
  const put = await dfs(['put', local, '/cli/sub/', '--chunk-size', '100KiB', '--replication', '2']);
  assert.equal(put.code, 0, put.stderr);
  assert.equal(put.stderr, '', 'no progress bar when stderr is not a terminal');

  const ls = await dfs(['ls', '-l', '/cli/sub']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout.toString(), /^- +2 +293 KiB .* local\.bin\n$/);
  const json = JSON.parse((await dfs(['ls', '--json', '/cli'])).stdout.toString());
  assert.deepEqual(json.map((e: { name: string; type: string }) => [e.name, e.type]), [['sub', 'directory']]);

  const st = JSON.parse((await dfs(['stat', '--json', '/cli/sub/local.bin'])).stdout.toString());
  assert.equal(st.size, data.length);
  assert.equal(st.chunks.length, 3);
  assert.ok(st.chunks.every((c: { replicas: unknown[] }) => c.replicas.length === 2));
  const human = (await dfs(['stat', '/cli/sub/local.bin'])).stdout.toString();
  assert.match(human, /replication: 2/);
  for (const k of keepers) if (st.chunks.some((c: { replicas: { address: string }[] }) => c.replicas.some((r) => r.address === k.address))) assert.ok(human.includes(k.address));

  const target = join(dir, 'copy.bin');
  const get = await dfs(['get', '/cli/sub/local.bin', target]);
  assert.equal(get.code, 0, get.stderr);
  assert.ok((await readFile(target)).equals(data));
  assert.deepEqual((await readdir(dir)).filter((n) => n.includes('dfs-part')), [], 'no temporary file left behind');

  const cat = await dfs(['cat', '/cli/sub/local.bin']);
  assert.equal(cat.code, 0, cat.stderr);
  assert.ok(cat.stdout.equals(data));
  const dash = await dfs(['get', '/cli/sub/local.bin', '-']);
  assert.ok(dash.stdout.equals(data));

  assert.equal((await dfs(['mv', '/cli/sub/local.bin', '/cli/moved.bin'])).code, 0);
  assert.deepEqual((await dfs(['ls', '/cli'])).stdout.toString().split('\n').filter(Boolean).sort(), ['moved.bin', 'sub/']);
  assert.equal((await dfs(['rm', '-r', '/cli'])).code, 0);
  const gone = await dfs(['ls', '/cli']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^dfs ls: .*\(NOT_FOUND\)\n$/);

  const status = JSON.parse((await dfs(['status', '--json'])).stdout.toString());
  assert.equal(status.totals.alive, 3);
  assert.equal(status.keepers.length, 3);
  assert.match((await dfs(['status'])).stdout.toString(), /keepers: 3 alive, 0 dead/);
});

test('the dfs command reports errors in one line with the code and exits non-zero', async () => {
  const missingRemote = await dfs(['get', '/no/such/file', join(dir, 'x')]);
  assert.equal(missingRemote.code, 1);
  assert.match(missingRemote.stderr, /^dfs get: .*\(NOT_FOUND\)\n$/);
  const missingLocal = await dfs(['put', join(dir, 'absent.bin'), '/absent.bin']);
  assert.equal(missingLocal.code, 1);
  assert.equal(missingLocal.stderr, `dfs put: local file '${join(dir, 'absent.bin')}' does not exist (NOT_FOUND)\n`);
  const noMaster = await dfs(['ls', '--master', '127.0.0.1:1']);
  assert.equal(noMaster.code, 1);
  assert.match(noMaster.stderr, /^dfs ls: .*127\.0\.0\.1:1.*\(UNAVAILABLE\)\n$/);
  const keeperAsMaster = await dfs(['ls', '/', '--master', keepers[0]!.address]);
  assert.equal(keeperAsMaster.code, 2);
  assert.match(keeperAsMaster.stderr, /is not a dfs master .*is it a keeper\?\) \(INVALID_ARGUMENT\)\n$/);
});

test('a replica damaged on disk is skipped: the reader gets the right bytes from another keeper', async () => {
  const data = rng.bytes(200_000);
  await client.put('/rot.bin', data, { chunkSize: 100_000 });
  const st = await client.stat('/rot.bin');
  // Flip the last byte of every chunk file on two of the three keepers: most first reads hit damage.
  let damaged = 0;
  for (const i of [0, 1]) {
    for (const c of st.chunks) {
      const r = (await storedReplicas(join(dir, `keeper${i}`))).find((x) => x.id === c.id);
      if (!r) continue;
      const fh = await open(r.file, 'r+');
      const last = r.dataOffset + r.size - 1;
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, last);
      b[0]! ^= 0xff;
      await fh.write(b, 0, 1, last);
      await fh.close();
      damaged++;
    }
  }
  assert.equal(damaged, 2 * st.chunks.length, 'two replicas of each chunk were damaged');
  for (let round = 0; round < 3; round++) assert.equal(sha(await readAllOf(await client.get('/rot.bin'))), sha(data));
});

test('after a keeper dies, files still read from the survivors and new files are written to them', async () => {
  const data = rng.bytes(500_000);
  await client.put('/survive.bin', data, { chunkSize: 100_000 });
  const victim = keepers[2]!;
  victim.child.kill('SIGKILL');
  await new Promise((r) => victim.child.once('exit', r));
  assert.equal(sha(await readAllOf(await client.get('/survive.bin'))), sha(data), 'read around the dead keeper');
  await waitFor('the master to see the keeper dead', async () => (await client.status()).keepers.filter((k) => k.alive).length === 2);
  const fresh = rng.bytes(250_000);
  await client.put('/after.bin', fresh, { chunkSize: 100_000 });
  const st = await client.stat('/after.bin');
  for (const c of st.chunks) assert.ok(!c.replicas.some((r) => r.address === victim.address), 'nothing placed on the dead keeper');
  assert.equal(sha(await readAllOf(await client.get('/after.bin'))), sha(fresh));
  const status = await dfs(['status']);
  assert.match(status.stdout.toString(), /keepers: 2 alive, 1 dead/);
  assert.match(status.stdout.toString(), /dead \(\d+s\)/);
});

test('an interrupted put leaves no file behind, and an older file at the path stays as it was', async () => {
  const old = rng.bytes(1000);
  await client.put('/interrupted.bin', old);
  const controller = new AbortController();
  let pieces = 0;
  const source = new Readable({
    read() {
      pieces++;
      if (pieces === 5) setTimeout(() => controller.abort(), 50);
      if (pieces <= 5) this.push(rng.bytes(64 * 1024));
    },
  });
  await assert.rejects(client.put('/interrupted.bin', source, { chunkSize: 64 * 1024, signal: controller.signal }), (e: DfsError) => e.code === 'CANCEL');
  await assert.rejects(client.put('/never-there.bin', Readable.from([Buffer.alloc(10)]), { signal: AbortSignal.abort() }), (e: DfsError) => e.code === 'CANCEL');
  await assert.rejects(client.stat('/never-there.bin'), (e: DfsError) => e.code === 'NOT_FOUND');
  assert.equal(sha(await readAllOf(await client.get('/interrupted.bin'))), sha(old));
});
