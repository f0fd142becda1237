// Receive-window growth (spec §7.5): a stream whose reader keeps up with a long transfer gets a larger
// window, a slow reader never does, and every byte of growth comes from, and returns to, one budget.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Connection, WindowBudget, duplexPair, type WindowGrowth, type WireStream } from '../src/transport/index.js';
import { MAX_WINDOW } from '../src/wire/index.js';

const BASE = 64 * 1024;
const MAX = 1024 * 1024;

function pair(growth: WindowGrowth | false, connectionWindow = 4 * BASE, maxFrameSize = 64 * 1024) {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client', windowGrowth: false });
  const server = new Connection(b, {
    role: 'server', settings: { streamWindow: BASE, connectionWindow, maxFrameSize }, windowGrowth: growth,
  });
  return { client, server, close: () => { client.destroy(); server.destroy(); } };
}

/** Polls until `done()` holds; fails after `ms` instead of waiting for ever. */
async function waitFor(done: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Opens a stream whose reader does not read, and waits until the sender has filled its window. */
async function fillWindowUnread(client: Connection, server: Connection): Promise<{ sender: WireStream; reader: WireStream }> {
  const accepted = new Promise<WireStream>((resolve) => {
    server.once('stream', (s: WireStream) => {
      s.on('error', () => {});
      s.reply(Buffer.alloc(0));
      s.pause();
      resolve(s);
    });
  });
  const sender = client.openStream(1, 1, Buffer.alloc(0));
  sender.on('error', () => {});
  sender.write(Buffer.alloc(4 * MAX));
  const reader = await accepted;
  await waitFor(() => reader.readableLength === BASE, 'the sender to fill the window');
  return { sender, reader };
}

/** The client's send window on the connection: what the server has granted it, as the client sees it. */
function connectionWindowHigh(conn: Connection): number {
  return (conn as unknown as { sendWindowHigh: number }).sendWindowHigh;
}

/**
 * Uploads `body` on a new stream; resolves with the SHA-256 the server saw. The server reads as data
 * arrives ('data' events), or, with `pauseMs`, takes all that is buffered and then works that long
 * before reading again: a reader slower than the link.
 */
async function upload(client: Connection, server: Connection, body: Buffer, options: { pauseMs?: number } = {}): Promise<{ stream: WireStream; digest: string }> {
  const seen = new Promise<string>((resolve, reject) => {
    server.once('stream', async (s: WireStream) => {
      s.reply(Buffer.alloc(0), { endStream: true });
      const hash = createHash('sha256');
      if (options.pauseMs === undefined) {
        s.on('data', (c: Buffer) => hash.update(c));
        s.once('end', () => resolve(hash.digest('hex')));
        s.once('error', reject);
        return;
      }
      try {
        for await (const c of s) {
          hash.update(c as Buffer);
          await new Promise((r) => setTimeout(r, options.pauseMs));
        }
        resolve(hash.digest('hex'));
      } catch (err) {
        reject(err);
      }
    });
  });
  const stream = client.openStream(1, 1, Buffer.alloc(0));
  stream.end(body);
  await stream.waitForReply();
  return { stream, digest: await seen };
}

test('a stream whose reader keeps up has its window doubled up to the ceiling, and the bytes arrive intact', async () => {
  const budget = new WindowBudget(64 * MAX);
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget });
  const body = randomBytes(8 * MAX);
  const { stream, digest } = await upload(client, server, body);
  assert.equal(digest, createHash('sha256').update(body).digest('hex'));
  assert.equal(stream.sendWindowHigh, MAX, 'the sender was granted the whole ceiling');
  // The connection window grew by the stream's growth, so the stream cannot starve the others.
  assert.equal(server.windowGrowthHeld, MAX - BASE);
  assert.equal(budget.free, budget.capacity - (MAX - BASE));
  assert.ok(connectionWindowHigh(client) > 4 * BASE, 'the client was granted more than the connection setting');
  assert.ok(connectionWindowHigh(client) <= 4 * BASE + (MAX - BASE));
  close();
  assert.equal(budget.free, budget.capacity, 'closing the connection hands its growth back');
});

test('without growth, or with a ceiling at the setting, the window stays at the setting', async () => {
  for (const growth of [false, { maxStreamWindow: BASE, budget: new WindowBudget(64 * MAX) }] as const) {
    const { client, server, close } = pair(growth);
    const { stream } = await upload(client, server, randomBytes(4 * MAX));
    assert.equal(stream.sendWindowHigh, BASE);
    assert.equal(connectionWindowHigh(client), 4 * BASE);
    close();
  }
});

test('a reader that falls behind does not grow its window, even one that takes all that is buffered at each read', async () => {
  const budget = new WindowBudget(64 * MAX);
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget });
  const body = randomBytes(2 * MAX);
  // Each read empties the buffer, but the window fills again while the reader works.
  const { stream, digest } = await upload(client, server, body, { pauseMs: 3 });
  assert.equal(digest, createHash('sha256').update(body).digest('hex'));
  assert.equal(stream.sendWindowHigh, BASE, 'a reader that left the window waiting got no growth');
  assert.equal(budget.free, budget.capacity);
  close();
});

test('a reader that stops with its window full grants credit as it reads again, but no growth', async () => {
  const budget = new WindowBudget(64 * MAX);
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget });
  const { sender: s, reader } = await fillWindowUnread(client, server);
  const before = s.sentBytes;
  for (let i = 0; i < 6; i++) {
    reader.read(BASE / 2);
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(s.sentBytes >= before + 2 * BASE, 'reading returned credit');
  assert.equal(s.sendWindowHigh, BASE, 'a reader with its window full got no growth');
  assert.equal(budget.free, budget.capacity);
  close();
});

test('a reader that fell behind must keep up for a whole window again before its window grows', async () => {
  const budget = new WindowBudget(64 * MAX);
  // DATA in 16 KiB frames, so credit is granted every half window.
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget }, 4 * BASE, 16 * 1024);
  // Record how much the stream had received when it first grew.
  const growWindow = server.growWindow.bind(server);
  let receivedAtFirstGrowth = -1;
  server.growWindow = (stream, current) => {
    const extra = growWindow(stream, current);
    if (extra > 0 && receivedAtFirstGrowth < 0) receivedAtFirstGrowth = stream.receivedBytes;
    return extra;
  };
  // The reader is behind: a whole window waits unread. Then it keeps up.
  const { reader } = await fillWindowUnread(client, server);
  reader.on('data', () => {}).resume();
  await waitFor(() => receivedAtFirstGrowth >= 0, 'the window to grow once the reader keeps up');
  // The grant that found the reader behind came after BASE bytes; growth needs a whole window more.
  // (Counting from the last growth instead, the next grant, half a window later, would grow it.)
  assert.ok(receivedAtFirstGrowth >= 2 * BASE, `grew after ${receivedAtFirstGrowth} bytes, before a whole window of keeping up`);
  close();
});

test('growth stops when the budget is spent, and the transfer still completes', async () => {
  const budget = new WindowBudget(3 * BASE); // one doubling (64 KiB) and one more (128 KiB), not a third
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget });
  const body = randomBytes(4 * MAX);
  const { stream, digest } = await upload(client, server, body);
  assert.equal(digest, createHash('sha256').update(body).digest('hex'));
  assert.equal(stream.sendWindowHigh, 4 * BASE, '64 KiB doubled twice, then the budget was spent');
  assert.equal(budget.free + server.windowGrowthHeld, budget.capacity, 'every byte of growth is accounted for');
  close();
  assert.equal(budget.free, budget.capacity);
});

test('growth of an ended stream is reused by the next stream on the connection before the budget is touched', async () => {
  const budget = new WindowBudget(MAX - BASE); // exactly one stream's growth to the ceiling
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget });
  const first = await upload(client, server, randomBytes(4 * MAX));
  assert.equal(first.stream.sendWindowHigh, MAX);
  // The first stream's last bytes, read after it ended, were already withheld: some budget is back.
  assert.equal(budget.free + server.windowGrowthHeld, budget.capacity);
  assert.ok(server.windowGrowthHeld > 0);
  const second = await upload(client, server, randomBytes(4 * MAX));
  assert.equal(second.stream.sendWindowHigh, MAX, 'the second stream grew on the first one\'s credit: the budget alone could not cover it');
  // The peer never held more than one stream's growth on top of the connection window.
  assert.ok(connectionWindowHigh(client) <= 4 * BASE + (MAX - BASE));
  close();
  assert.equal(budget.free, budget.capacity);
});

test('growth credit left over by an ended stream is withheld as data arrives and handed back to the budget', async () => {
  const budget = new WindowBudget(64 * MAX);
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget });
  await upload(client, server, randomBytes(4 * MAX));
  assert.ok(server.windowGrowthHeld > 0);
  assert.equal(budget.free + server.windowGrowthHeld, budget.capacity);
  // Streams shorter than a window never grow, so all they carry goes to withholding the old growth.
  for (let i = 0; i < 20; i++) await upload(client, server, randomBytes(BASE - 1024));
  assert.equal(server.windowGrowthHeld, 0);
  assert.equal(budget.free, budget.capacity, 'the withheld credit went back to the budget');
  close();
});

test('a connection grows by at most seven times its window, so its later grants still give back spent credit', async () => {
  const budget = new WindowBudget(64 * MAX);
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget }, BASE);
  const { stream } = await upload(client, server, randomBytes(8 * MAX));
  // 64 KiB doubled to 128, 256 and 512 KiB holds 448 KiB of growth, 7 times the connection window;
  // the next step, to 1 MiB, would pass it.
  assert.equal(stream.sendWindowHigh, 8 * BASE);
  assert.ok(connectionWindowHigh(client) <= 8 * BASE);
  close();
});

test('a grown stream whose reader stops leaves the other streams the credit they had before growth', async () => {
  const budget = new WindowBudget(64 * MAX);
  const { client, server, close } = pair({ maxStreamWindow: MAX, budget });
  const accepted: WireStream[] = [];
  let otherBytes = 0;
  const otherDone = new Promise<void>((resolve) => {
    server.on('stream', (s: WireStream) => {
      accepted.push(s);
      s.on('error', () => {});
      s.reply(Buffer.alloc(0));
      if (accepted.length === 1) {
        s.on('data', () => {});
      } else {
        s.on('data', (c: Buffer) => { otherBytes += c.length; });
        s.once('end', () => resolve());
      }
    });
  });
  // The first stream grows to the ceiling while its reader keeps up...
  const grown = client.openStream(1, 1, Buffer.alloc(0));
  grown.on('error', () => {});
  grown.write(Buffer.alloc(4 * MAX));
  await waitFor(() => server.windowGrowthHeld === MAX - BASE, 'the first stream to grow to the ceiling');
  // ...then its reader stops, and the sender fills its whole grown window.
  accepted[0]!.pause();
  grown.write(Buffer.alloc(4 * MAX));
  await waitFor(() => grown.sendWindow === 0 && accepted[0]!.readableLength > MAX / 2, 'the stalled stream to use up its grown window');
  const other = client.openStream(1, 1, Buffer.alloc(0));
  other.on('error', () => {});
  other.end(Buffer.alloc(2 * MAX));
  await waitFor(() => otherBytes === 2 * MAX, 'the other stream to finish', 10_000).finally(close);
  await otherDone;
  assert.equal(otherBytes, 2 * MAX, 'the other stream got all its bytes through while the grown one was stalled');
});

test('growth never takes the credit granted on a connection past the largest window', async () => {
  const budget = new WindowBudget(64 * MAX);
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client', windowGrowth: false });
  // A connection window one step short of the largest allowed: growing by even one step would let
  // the peer's window pass 2^31-1 once everything was consumed and granted back.
  const server = new Connection(b, {
    role: 'server', settings: { streamWindow: BASE, connectionWindow: MAX_WINDOW - BASE + 1 }, windowGrowth: { maxStreamWindow: MAX, budget },
  });
  const body = randomBytes(4 * MAX);
  const { stream, digest } = await upload(client, server, body);
  assert.equal(digest, createHash('sha256').update(body).digest('hex'));
  assert.equal(stream.sendWindowHigh, BASE, 'no growth: it would not fit under the largest window');
  assert.equal(server.windowGrowthHeld, 0);
  assert.equal(budget.free, budget.capacity);
  client.destroy();
  server.destroy();
});

test('connections sharing a budget each hand back exactly their own growth', async () => {
  const budget = new WindowBudget(64 * MAX);
  const first = pair({ maxStreamWindow: MAX, budget });
  const second = pair({ maxStreamWindow: MAX, budget });
  await upload(first.client, first.server, randomBytes(4 * MAX));
  await upload(second.client, second.server, randomBytes(4 * MAX));
  assert.equal(first.server.windowGrowthHeld, MAX - BASE);
  assert.equal(second.server.windowGrowthHeld, MAX - BASE);
  assert.equal(budget.free, budget.capacity - 2 * (MAX - BASE));
  first.close();
  assert.equal(budget.free, budget.capacity - (MAX - BASE), 'the first connection returned its growth, once');
  second.close();
  assert.equal(budget.free, budget.capacity);
});

test('WindowBudget rejects a capacity that is not a byte count', () => {
  assert.throws(() => new WindowBudget(-1), RangeError);
  assert.throws(() => new WindowBudget(1.5), RangeError);
});

test('a connection rejects a growth ceiling that is not a window size', () => {
  const budget = new WindowBudget(MAX);
  for (const maxStreamWindow of [0, -1, Number.NaN, 1.5, MAX_WINDOW + 1]) {
    const [a] = duplexPair();
    assert.throws(() => new Connection(a, { role: 'client', windowGrowth: { maxStreamWindow, budget } }),
      (err: Error) => err instanceof RangeError && /maxStreamWindow/.test(err.message), String(maxStreamWindow));
    a.destroy();
  }
});
