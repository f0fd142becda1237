// What happens when things break, with real processes: replicas audited straight from each keeper,
// deletes that really delete, keepers killed with SIGKILL in the middle of a put and of a get,
// and a keeper so slow that back-pressure must reach the writer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DfsError } from '../src/index.js';
import { callForBuffer, connect as connectWire, parseAddress } from '../src/transport/index.js';
import { READ_CHUNK } from '../src/protocol/ops.js';
import { rssOf, runDfs, startCluster, waitFor, type Cluster } from './helpers/cluster.js';
import { randomPieces, readAllOf, sha } from './helpers/data.js';


test('every replica the master reports holds the exact chunk, and there are as many as the replication factor', async (t) => {
  const cluster = await startCluster({ keepers: 3 });
  t.after(() => cluster.stop());
  const files = new Map<string, Buffer>();
  for (const [i, size] of [1, 300_000, 1_048_576 * 3 + 17].entries()) files.set(`/audit/f${i}`, randomBytes(size));
  await Promise.all([...files].map(([path, data]) => cluster.client.put(path, data, { chunkSize: 1_048_576 })));
  for (const [path, data] of files) {
    const st = await cluster.client.stat(path);
    assert.equal(st.replication, 3);
    let offset = 0;
    for (const chunk of st.chunks) {
      assert.equal(chunk.replicas.length, 3, `${path} chunk ${chunk.id}: ${chunk.replicas.length} replicas`);
      const expected = data.subarray(offset, offset + chunk.size);
      assert.equal(chunk.sha256, sha(expected));
      for (const replica of chunk.replicas) {
        const conn = await connectWire(parseAddress(replica.address));
        const { body } = await callForBuffer(conn, READ_CHUNK, { chunkId: chunk.id }, { maxBodyBytes: 64 << 20 });
        conn.destroy();
        assert.ok(body.equals(expected), `${path} chunk ${chunk.id} on ${replica.address} differs`);
      }
      offset += chunk.size;
    }
    assert.equal(offset, data.length);
  }
});

test('after rm a file reads as NOT_FOUND, through the SDK and the dfs command', async (t) => {
  const cluster = await startCluster({ keepers: 3 });
  t.after(() => cluster.stop());
  await cluster.client.put('/gone/file', randomBytes(100_000));
  await cluster.client.remove('/gone/file');
  await assert.rejects(cluster.client.get('/gone/file').then(readAllOf), (err: DfsError) => err.code === 'NOT_FOUND');
  const cli = await runDfs(['get', '/gone/file', '-'], cluster.master.address);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /NOT_FOUND/);
  await cluster.client.remove('/gone', { recursive: true });
  await assert.rejects(cluster.client.stat('/gone'), (err: DfsError) => err.code === 'NOT_FOUND');
});

test('a put completes when a keeper in its pipeline is killed with SIGKILL half-way', async (t) => {
  const cluster: Cluster = await startCluster({ keepers: 4 });
  t.after(() => cluster.stop());
  const total = 48 * 1_048_576;
  const digest = createHash('sha256');
  let killed = false;
  await cluster.client.put('/kill/put.bin', Readable.from(randomPieces(total, 256 * 1024, digest)), {
    chunkSize: 1_048_576,
    onProgress: ({ bytes }) => {
      if (!killed && bytes > total / 3) {
        killed = true;
        cluster.keepers[1]!.child.kill('SIGKILL');
      }
    },
  });
  assert.ok(killed, 'the keeper was killed during the put');
  const back = await readAllOf(await cluster.client.get('/kill/put.bin'));
  assert.equal(back.length, total);
  assert.equal(sha(back), digest.digest('hex'));
});

test('a get completes when a keeper serving it is killed with SIGKILL half-way', async (t) => {
  const cluster: Cluster = await startCluster({ keepers: 3 });
  t.after(() => cluster.stop());
  const data = randomBytes(32 * 1_048_576);
  await cluster.client.put('/kill/get.bin', data, { chunkSize: 1_048_576 });
  const stream = await cluster.client.get('/kill/get.bin');
  const parts: Buffer[] = [];
  let got = 0;
  let killed = false;
  for await (const piece of stream) {
    parts.push(piece as Buffer);
    got += (piece as Buffer).length;
    if (!killed && got > data.length / 4) {
      killed = true;
      cluster.keepers[0]!.child.kill('SIGKILL');
      // Slow down a little so reads in flight meet the dead keeper.
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  assert.ok(killed);
  assert.ok(Buffer.concat(parts).equals(data), 'the bytes read back differ from those written');
});

/** The pid of the running process whose command line contains `tag`, or 0. */
async function findProcess(tag: string): Promise<number> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(tag)) return Number(entry);
  }
  return 0;
}

test('a throttled keeper slows the writer instead of making any process buffer the file', async (t) => {
  const cluster: Cluster = await startCluster({ keepers: 3, deadAfterMs: 5000 });
  t.after(() => cluster.stop());
  const slow = cluster.keepers[2]!.child;
  // Throttle by stopping the keeper's process half of the time: it reads its sockets slowly, so
  // only back-pressure through the whole pipeline keeps the writer from racing ahead.
  let stopped = false;
  const throttle = setInterval(() => {
    stopped = !stopped;
    slow.kill(stopped ? 'SIGSTOP' : 'SIGCONT');
  }, 100);
  t.after(() => { clearInterval(throttle); slow.kill('SIGCONT'); });

  /** Puts a file of `mib` MiB with `dfs put`; returns the peak RSS of the writer and of each server. */
  async function putAndMeasure(mib: number): Promise<{ writer: number; servers: number[] }> {
    const local = join(cluster.dir, `f${mib}.bin`);
    await writeFile(local, Readable.from(randomPieces(mib * 1_048_576, 1_048_576, createHash('sha256'))));
    const tag = `/slow/f${mib}.bin`;
    const pids = [cluster.master.child.pid!, ...cluster.keepers.map((k) => k.child.pid!)];
    const servers = pids.map(() => 0);
    let writer = 0;
    const sampler = setInterval(async () => {
      const pid = await findProcess(tag);
      if (pid) writer = Math.max(writer, await rssOf(pid));
      for (const [i, p] of pids.entries()) servers[i] = Math.max(servers[i]!, await rssOf(p));
    }, 50);
    const result = await runDfs(['put', '--quiet', local, tag], cluster.master.address);
    clearInterval(sampler);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((await cluster.client.stat(tag)).size, mib * 1_048_576);
    assert.ok(writer > 0, 'the writer was sampled');
    return { writer, servers };
  }

  const small = await putAndMeasure(32);
  const large = await putAndMeasure(320);
  const growth = large.writer - small.writer;
  const MiB = (n: number) => `${Math.round(n / 1_048_576)} MiB`;
  t.diagnostic(`writer peak RSS: ${MiB(small.writer)} for 32 MiB, ${MiB(large.writer)} for 320 MiB; servers ${large.servers.map(MiB).join(', ')}`);
  // A process that buffered what the slow keeper could not take would grow by most of the 288 MiB
  // between the two files; memory bounded by windows and chunks in flight grows by far less (RSS
  // still drifts up to a plateau as the allocator warms, hence the margin).
  const limit = 0.6 * 288 * 1_048_576;
  assert.ok(growth < limit, `the writer grew by ${MiB(growth)} between a 32 MiB and a 320 MiB file`);
  for (const [i, rss] of large.servers.entries()) {
    const grew = rss - small.servers[i]!;
    assert.ok(grew < limit, `server process ${i} grew by ${MiB(grew)} between a 32 MiB and a 320 MiB file`);
  }
  clearInterval(throttle);
  slow.kill('SIGCONT');
  await waitFor('the slow keeper to be heard again', async () => (await cluster.client.status()).keepers.every((k) => k.alive));
});
