// Streams and credit: many streams share one connection, credit paces every sender,
// and a slow reader never stalls other streams or the socket.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Connection, duplexPair, readAll, type WireStream } from '../src/transport/index.js';
import { Flag, FrameDecoder, FrameType, encodeHello, encodePreface } from '../src/wire/index.js';

function pair(settings: { client?: object; server?: object } = {}) {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client', settings: settings.client });
  const server = new Connection(b, { role: 'server', settings: settings.server });
  return { client, server, close: () => { client.destroy(); server.destroy(); } };
}

/** A server that answers every stream by echoing its body. */
function echoing(server: Connection) {
  server.on('stream', (s: WireStream) => {
    s.on('error', () => {});
    s.reply(Buffer.alloc(0));
    s.pipe(s);
  });
}

test('concurrent streams on one connection each get back exactly their own bytes', async () => {
  const { client, server, close } = pair();
  echoing(server);
  const bodies = Array.from({ length: 40 }, (_, i) => randomBytes(1000 + i * 37_001));
  const results = await Promise.all(bodies.map(async (body) => {
    const s = client.openStream(0x10, 1, Buffer.alloc(0));
    s.end(body);
    await s.waitForReply();
    return readAll(s, 1 << 30);
  }));
  results.forEach((r, i) => assert.ok(r.equals(bodies[i]!), `stream ${i} got different bytes`));
  close();
});

test('stream ids are odd for the client, increasing, and never reused', async () => {
  const { client, server, close } = pair();
  const seen: number[] = [];
  server.on('stream', (s: WireStream) => { seen.push(s.id); s.reply(Buffer.alloc(0), { endStream: true }); s.resume(); });
  for (let i = 0; i < 5; i++) {
    const s = client.openStream(1, 1, Buffer.alloc(0), { endStream: true });
    await s.waitForReply();
  }
  assert.deepEqual(seen, [1, 3, 5, 7, 9]);
  close();
});

test('write() returns false once credit runs out, and drain fires when the reader catches up', async () => {
  const window = 16 * 1024; // below the writer's 64 KiB high-water mark, so credit is what blocks
  const { client, server, close } = pair({ server: { streamWindow: window } });
  let accepted: WireStream | null = null;
  server.on('stream', (s: WireStream) => { accepted = s; s.on('error', () => {}); s.reply(Buffer.alloc(0)); });
  const s = client.openStream(1, 1, Buffer.alloc(0));
  s.on('error', () => {});
  let drainedEarly = false;
  s.on('drain', () => { drainedEarly = true; });
  let writes = 0;
  while (s.write(Buffer.alloc(16 * 1024))) {
    writes++;
    assert.ok(writes < 1000, 'write() never reported back-pressure');
  }
  // Let everything the credit allows arrive: the receiver holds at most its window.
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(accepted, 'server saw the stream');
  const rx = accepted as unknown as WireStream;
  assert.ok(rx.readableLength <= window, `receiver buffered ${rx.readableLength} > window ${window}`);
  assert.equal(rx.readableLength, window, 'the sender used all the credit it had');
  assert.equal(drainedEarly, false, 'drain fired although the receiver had not read');
  const drained = new Promise<void>((resolve) => s.once('drain', resolve));
  rx.resume();
  await drained;
  close();
});

test('a stream nobody reads does not stall the other streams on the connection', async () => {
  const { client, server, close } = pair({ server: { streamWindow: 256 * 1024, connectionWindow: 1024 * 1024 } });
  const received = new Map<number, number>();
  server.on('stream', (s: WireStream) => {
    s.reply(Buffer.alloc(0));
    s.on('error', () => {});
    if (s.op === 0x66) return; // the stalled stream: never read
    s.on('data', (d: Buffer) => received.set(s.id, (received.get(s.id) ?? 0) + d.length));
    s.on('end', () => s.end());
  });
  const stalled = client.openStream(0x66, 1, Buffer.alloc(0));
  stalled.on('error', () => {});
  stalled.write(Buffer.alloc(4 * 1024 * 1024));
  const total = 20 * 1024 * 1024; // 20x the connection window: only possible if credit keeps flowing
  const fast = client.openStream(0x67, 1, Buffer.alloc(0));
  fast.end(Buffer.alloc(total));
  await fast.waitForReply();
  fast.resume();
  await new Promise<void>((resolve, reject) => { fast.on('end', resolve); fast.on('error', reject); });
  assert.equal(received.get(fast.id), total);
  close();
});

test('memory held by a receiving stream is bounded by its window whatever the sender writes', async () => {
  const window = 128 * 1024;
  const { client, server, close } = pair({ server: { streamWindow: window } });
  let rx: WireStream | null = null;
  server.on('stream', (s: WireStream) => { rx = s; s.on('error', () => {}); s.reply(Buffer.alloc(0)); s.pause(); });
  const s = client.openStream(1, 1, Buffer.alloc(0));
  s.on('error', () => {});
  // Ignore back-pressure on purpose: the excess waits on the sender, not the receiver.
  for (let i = 0; i < 64; i++) s.write(Buffer.alloc(64 * 1024));
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(rx);
  assert.ok((rx as unknown as WireStream).readableLength <= window);
  close();
});

test('a reader that stops reading stops the sender, and resuming delivers every byte in order', async () => {
  const { client, server, close } = pair({ server: { streamWindow: 32 * 1024, connectionWindow: 64 * 1024 } });
  const body = randomBytes(3 * 1024 * 1024);
  const got = new Promise<Buffer>((resolve) => {
    server.on('stream', async (s: WireStream) => {
      s.reply(Buffer.alloc(0), { endStream: true });
      const hash = createHash('sha256');
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const c of s) {
        chunks.push(c as Buffer);
        hash.update(c as Buffer);
        if (++n % 10 === 0) await new Promise((r) => setTimeout(r, 2)); // a slow consumer
      }
      resolve(Buffer.concat(chunks));
    });
  });
  const s = client.openStream(1, 1, Buffer.alloc(0));
  s.end(body);
  assert.ok((await got).equals(body));
  close();
});

test('a small body written with end() leaves as one DATA frame carrying END_STREAM', async () => {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client' });
  const frames: { type: number; flags: number; length: number }[] = [];
  const decoder = new FrameDecoder({ maxFrameSize: 1 << 20, expectPreface: true });
  b.on('data', (chunk: Buffer) => decoder.push(chunk, (f) => frames.push({ type: f.type, flags: f.flags, length: f.payload.length })));
  b.write(Buffer.concat([encodePreface(), encodeHello({})]));
  await client.ready;
  const s = client.openStream(0x10, 1, Buffer.alloc(0));
  s.on('error', () => {});
  s.end(Buffer.alloc(64, 7));
  await new Promise((r) => setTimeout(r, 20));
  const data = frames.filter((f) => f.type === FrameType.DATA);
  assert.deepEqual(data, [{ type: FrameType.DATA, flags: Flag.END_STREAM, length: 64 }]);
  client.destroy();
});

test('many streams that each consume less than half their window still return the connection window', { timeout: 60_000 }, async () => {
  // 64 streams share the 16 MiB connection window: each gets about 256 KiB of it, below half its own
  // 1 MiB window, so connection credit must not wait for stream credit or every sender blocks for good.
  const { client, server, close } = pair();
  server.on('stream', (s: WireStream) => {
    s.on('error', () => {});
    let received = 0;
    s.on('data', (chunk: Buffer) => { received += chunk.length; });
    s.on('end', () => s.reply(Buffer.from(String(received)), { endStream: true }));
  });
  const body = Buffer.alloc(2 * 1024 * 1024, 0x61);
  const counts = await Promise.all(Array.from({ length: 64 }, async () => {
    const s = client.openStream(1, 1, Buffer.alloc(0));
    s.on('error', () => {});
    s.end(body);
    return (await s.waitForReply()).toString();
  }));
  assert.deepEqual(counts, counts.map(() => String(body.length)));
  close();
});
