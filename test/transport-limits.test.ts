// Every limit of spec §10 is crossed here: a peer that breaks one gets RESET or GOAWAY with the
// right code, and nothing else on the process is affected.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Flag, FrameType, encodeCredit, encodeData, encodeFrame, encodeReply, encodeFrameHeader, encodeHello, encodeOpen, encodePing, encodePreface, encodeReset, parseGoAway, parseReset } from '../src/wire/index.js';
import { Connection, RpcServer, duplexPair, registerEcho, type WireStream } from '../src/transport/index.js';
import { DfsError } from '../src/wire/index.js';
import { RawPeer } from './helpers/raw-peer.js';

function served(options: ConstructorParameters<typeof RawPeer>[0] = {}) {
  const peer = new RawPeer(options);
  registerEcho(new RpcServer()).serve(peer.conn);
  return peer;
}

/** A peer whose side of the connection answers every stream the raw side opens with `bytes` of DATA. */
function sending(options: ConstructorParameters<typeof RawPeer>[0], bytes: number, fill = 0) {
  const peer = new RawPeer(options);
  peer.conn.on('stream', (s: WireStream) => {
    s.on('error', () => {});
    s.reply(Buffer.alloc(0));
    s.end(Buffer.alloc(bytes, fill));
  });
  return peer;
}

test('a frame larger than MAX_FRAME_SIZE is refused with FRAME_SIZE_ERROR before its payload arrives', async () => {
  const peer = served({ settings: { maxFrameSize: 16 * 1024 } });
  // Only the header is sent: the check must not wait for (or allocate) the payload.
  peer.write(encodeFrameHeader(FrameType.DATA, 0, 1, 16 * 1024 + 1));
  const goAway = await peer.goAway();
  assert.equal(goAway.code, 'FRAME_SIZE_ERROR');
  assert.ok(peer.conn.isClosed);
});

test('an OPEN beyond MAX_CONCURRENT_STREAMS is refused with REFUSED_STREAM and was not processed', async () => {
  const peer = new RawPeer({ settings: { maxConcurrentStreams: 2 } });
  const opened: number[] = [];
  peer.conn.on('stream', (s: WireStream) => { opened.push(s.id); s.on('error', () => {}); });
  for (const id of [1, 3, 5]) peer.write(encodeOpen(id, 0x10, 1, Buffer.alloc(0), false));
  const reset = await peer.reset(5);
  assert.equal(reset.code, 'REFUSED_STREAM');
  assert.deepEqual(opened, [1, 3]);
  assert.equal(peer.conn.isClosed, false, 'a refused stream does not cost the connection');
  peer.conn.destroy();
});

test('an OPEN header above MAX_HEADER_SIZE is reset with HEADER_TOO_LARGE', async () => {
  const peer = served({ settings: { maxHeaderSize: 1024 } });
  peer.write(encodeOpen(1, 0x0001, 1, Buffer.alloc(2000), true));
  assert.equal((await peer.reset(1)).code, 'HEADER_TOO_LARGE');
  assert.equal(peer.conn.isClosed, false);
  peer.conn.destroy();
});

test('CREDIT that overflows the connection window is a FLOW_CONTROL_ERROR', async () => {
  const peer = served();
  peer.write(encodeCredit(0, 0x7fff_ffff));
  assert.equal((await peer.goAway()).code, 'FLOW_CONTROL_ERROR');
});

test('CREDIT that overflows a stream window resets that stream only', async () => {
  const peer = new RawPeer();
  peer.conn.on('stream', (s: WireStream) => { s.on('error', () => {}); s.reply(Buffer.alloc(0)); });
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), false));
  peer.write(encodeCredit(1, 0x7fff_ffff));
  assert.equal((await peer.reset(1)).code, 'FLOW_CONTROL_ERROR');
  assert.equal(peer.conn.isClosed, false);
  peer.conn.destroy();
});

test('DATA beyond a stream window resets that stream with FLOW_CONTROL_ERROR', async () => {
  const peer = new RawPeer({ settings: { streamWindow: 1000, maxFrameSize: 4096 } });
  peer.conn.on('stream', (s: WireStream) => { s.on('error', () => {}); });
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), false));
  peer.write(encodeData(1, Buffer.alloc(1001), false));
  assert.equal((await peer.reset(1)).code, 'FLOW_CONTROL_ERROR');
  assert.equal(peer.conn.isClosed, false);
  peer.conn.destroy();
});

test('DATA beyond the connection window is a FLOW_CONTROL_ERROR for the connection', async () => {
  const peer = new RawPeer({ settings: { streamWindow: 1000, connectionWindow: 1500, maxFrameSize: 4096 } });
  peer.conn.on('stream', (s: WireStream) => { s.on('error', () => {}); }); // nobody reads: no credit returns
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), false));
  peer.write(encodeOpen(3, 0x10, 1, Buffer.alloc(0), false));
  peer.write(encodeData(1, Buffer.alloc(1000), false));
  peer.write(encodeData(3, Buffer.alloc(600), false));
  assert.equal((await peer.goAway()).code, 'FLOW_CONTROL_ERROR');
});

test('data on a reset stream is still charged to the connection and its credit returned', async () => {
  const peer = new RawPeer({ settings: { connectionWindow: 100_000, streamWindow: 100_000 } });
  peer.conn.on('stream', (s: WireStream) => { s.on('error', () => {}); s.destroy(); });
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), false));
  await peer.reset(1);
  // The peer had these in flight when the RESET crossed: they must give the credit back.
  for (let i = 0; i < 6; i++) peer.write(encodeData(1, Buffer.alloc(10_000), false));
  const credit = await peer.waitFor((f) => f.type === FrameType.CREDIT && f.streamId === 0);
  assert.ok(credit.payload.readUInt32BE(0) >= 50_000);
  assert.equal(peer.conn.isClosed, false);
  peer.conn.destroy();
});

test('a PING flood is stopped with RATE_LIMITED', async () => {
  const peer = served({ limits: { pingsPerSecond: 20 } });
  for (let i = 0; i < 30; i++) peer.write(encodePing(Buffer.alloc(8, i)));
  assert.equal((await peer.goAway()).code, 'RATE_LIMITED');
});

test('an empty-frame flood (zero-length DATA, unknown frame types) is stopped with RATE_LIMITED', async () => {
  const peer = new RawPeer({ limits: { emptyFramesPerSecond: 50 } });
  peer.conn.on('stream', (s: WireStream) => { s.on('error', () => {}); s.reply(Buffer.alloc(0)); });
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), false));
  for (let i = 0; i < 30; i++) peer.write(encodeData(1, Buffer.alloc(0), false));
  for (let i = 0; i < 30; i++) peer.write(encodeFrame(0xe5, 0, 0, Buffer.alloc(0)));
  assert.equal((await peer.goAway()).code, 'RATE_LIMITED');
});

test('a few grease frames are skipped without harm', async () => {
  const peer = served();
  for (let i = 0; i < 5; i++) peer.write(encodeFrame(0xe0 + i, 0x01, 0, Buffer.from('grease')));
  peer.write(encodeOpen(1, 0x0001, 1, Buffer.alloc(0), true));
  const reply = await peer.waitFor((f) => f.type === FrameType.REPLY && f.streamId === 1);
  assert.equal(reply.streamId, 1);
  peer.conn.destroy();
});

test('rapid open-then-reset is stopped with RATE_LIMITED', async () => {
  const peer = new RawPeer({ limits: { rapidResetsPerSecond: 20 } });
  peer.conn.on('stream', (s: WireStream) => s.on('error', () => {}));
  for (let i = 0; i < 40; i++) {
    const id = 1 + 2 * i;
    peer.write(encodeOpen(id, 0x10, 1, Buffer.alloc(0), false));
    peer.write(encodeReset(id, 'CANCEL', 0));
  }
  assert.equal((await peer.goAway()).code, 'RATE_LIMITED');
});

test('a RESET flood is stopped with RATE_LIMITED', async () => {
  const peer = new RawPeer({ limits: { resetsPerSecond: 20, rapidResetsPerSecond: 1000 } });
  peer.conn.on('stream', (s: WireStream) => { s.on('error', () => {}); s.reply(Buffer.alloc(0)); });
  for (let i = 0; i < 40; i++) {
    const id = 1 + 2 * i;
    peer.write(encodeOpen(id, 0x10, 1, Buffer.alloc(0), false));
  }
  await new Promise((r) => setTimeout(r, 20));
  for (let i = 0; i < 40; i++) peer.write(encodeReset(1 + 2 * i, 'CANCEL', 0));
  assert.equal((await peer.goAway()).code, 'RATE_LIMITED');
});

test('a control-frame flood of CREDIT is stopped with RATE_LIMITED', async () => {
  const peer = served({ limits: { controlFramesPerSecond: 100 } });
  for (let i = 0; i < 150; i++) peer.write(encodeCredit(0, 1));
  assert.equal((await peer.goAway()).code, 'RATE_LIMITED');
});

test('a receiver granting CREDIT every eighth of a window is never RATE_LIMITED, however many CREDITs that takes', async () => {
  const total = 1024 * 1024;
  const streamWindow = 8192;
  const connectionWindow = 65536;
  // 1,024 stream and 128 connection CREDITs, far more than 20 a second unless the transfer took a minute.
  const peer = sending({ limits: { controlFramesPerSecond: 20 }, peerSettings: { streamWindow, connectionWindow } }, total, 7);
  let received = 0;
  let credits = 0;
  let streamUncredited = 0;
  let connectionUncredited = 0;
  const done = new Promise<void>((resolve, reject) => {
    peer.onFrame = (f) => {
      if (f.type === FrameType.GOAWAY) reject(new Error(`GOAWAY ${parseGoAway(f.payload).code}: ${parseGoAway(f.payload).reason}`));
      if (f.type !== FrameType.DATA || f.streamId !== 1) return;
      received += f.payload.length;
      streamUncredited += f.payload.length;
      connectionUncredited += f.payload.length;
      for (; streamUncredited >= streamWindow / 8; streamUncredited -= streamWindow / 8, credits++) peer.write(encodeCredit(1, streamWindow / 8));
      for (; connectionUncredited >= connectionWindow / 8; connectionUncredited -= connectionWindow / 8, credits++) peer.write(encodeCredit(0, connectionWindow / 8));
      if (f.flags & Flag.END_STREAM) resolve();
    };
  });
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), true));
  await done;
  assert.equal(received, total);
  assert.equal(credits, 1024 + 128);
  assert.equal(peer.conn.isClosed, false);
  peer.conn.destroy();
});

test('a flood of small stream CREDITs is RATE_LIMITED even while the stream has DATA to send', async () => {
  const peer = sending({ limits: { controlFramesPerSecond: 100 }, peerSettings: { streamWindow: 65536 } }, 1024 * 1024);
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), true));
  await peer.waitFor((f) => f.type === FrameType.DATA && f.streamId === 1);
  // The whole window was sent and these return 15,000 bytes of it, but each is below 1/16 of the window.
  for (let i = 0; i < 150; i++) peer.write(encodeCredit(1, 100));
  assert.equal((await peer.goAway()).code, 'RATE_LIMITED');
});

test('a flood of large CREDITs that keep raising the window is RATE_LIMITED', async () => {
  const peer = served({ limits: { controlFramesPerSecond: 100 } });
  // 1 MiB is 1/16 of the default connection window, but each one grows the window past anything it was.
  for (let i = 0; i < 150; i++) peer.write(encodeCredit(0, 1024 * 1024));
  assert.equal((await peer.goAway()).code, 'RATE_LIMITED');
});

test('a peer cannot make tiny CREDITs look large: a tiny announced window, or one raised once, still counts them', async () => {
  // The connection window: announced as 16 bytes, raised once to 1 GiB; then 1-byte CREDITs, each
  // within what this side has sent, 1/16 of the announced window and below the largest so far.
  const raised = sending({ limits: { controlFramesPerSecond: 100 }, peerSettings: { connectionWindow: 16 } }, 1024 * 1024);
  raised.write(encodeCredit(0, 1024 * 1024 * 1024));
  raised.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), true));
  await raised.waitFor((f) => f.type === FrameType.DATA && (f.flags & Flag.END_STREAM) !== 0);
  for (let i = 0; i < 200; i++) raised.write(encodeCredit(0, 1));
  assert.equal((await raised.goAway()).code, 'RATE_LIMITED');

  // A stream window announced as 16 bytes: every 1-byte CREDIT is 1/16 of it and gives back bytes sent.
  const tiny = sending({ limits: { controlFramesPerSecond: 100 }, peerSettings: { streamWindow: 16 } }, 1024 * 1024);
  tiny.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), true));
  let sent = 0;
  tiny.onFrame = (f) => {
    if (f.type === FrameType.DATA && f.streamId === 1 && sent < 200) for (let i = 0; i < f.payload.length; i++, sent++) tiny.write(encodeCredit(1, 1));
  };
  assert.equal((await tiny.goAway()).code, 'RATE_LIMITED');
});

test('stream errors the peer provokes count as rapid resets: a flood of them is RATE_LIMITED', async () => {
  const peer = new RawPeer({ limits: { rapidResetsPerSecond: 100 } });
  peer.conn.on('stream', (s: WireStream) => s.on('error', () => {}));
  // Each stream is opened, then sent a REPLY it may not receive (PROTOCOL_ERROR): as cheap for the
  // peer as opening and resetting it, and as costly here (MadeYouReset).
  for (let i = 0; i < 150; i++) peer.write(Buffer.concat([encodeOpen(2 * i + 1, 0x10, 1, Buffer.alloc(0), false), encodeReply(2 * i + 1, Buffer.alloc(0), false)]));
  assert.equal((await peer.goAway()).code, 'RATE_LIMITED');
});

test('a second HELLO is a PROTOCOL_ERROR: settings cannot be flooded', async () => {
  const peer = served();
  peer.write(encodeHello({ maxFrameSize: 20000 }));
  assert.equal((await peer.goAway()).code, 'PROTOCOL_ERROR');
});

test('OPEN on a stream id that is not above the last one is a PROTOCOL_ERROR', async () => {
  const peer = served();
  peer.write(encodeOpen(5, 0x0001, 1, Buffer.alloc(0), true));
  peer.write(encodeOpen(3, 0x0001, 1, Buffer.alloc(0), true));
  assert.equal((await peer.goAway()).code, 'PROTOCOL_ERROR');
});

test('DATA on a stream that was never opened is a PROTOCOL_ERROR', async () => {
  const peer = served();
  peer.write(encodeData(7, Buffer.from('x'), false));
  assert.equal((await peer.goAway()).code, 'PROTOCOL_ERROR');
});

test('RESET whose final size disagrees with the bytes received is a PROTOCOL_ERROR', async () => {
  const peer = new RawPeer();
  peer.conn.on('stream', (s: WireStream) => { s.on('error', () => {}); s.reply(Buffer.alloc(0)); });
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), false));
  peer.write(encodeData(1, Buffer.alloc(100), false));
  peer.write(encodeReset(1, 'CANCEL', 99));
  assert.equal((await peer.goAway()).code, 'PROTOCOL_ERROR');
});

test('a peer that never sends its preface is dropped after the HELLO timeout', async () => {
  const peer = new RawPeer({ sendHello: false, limits: { helloTimeoutMs: 50 } });
  assert.equal((await peer.goAway()).code, 'PROTOCOL_ERROR');
  assert.ok(peer.conn.isClosed);
});

test('the wrong protocol on the port fails at once with BAD_PREFACE', async () => {
  const peer = new RawPeer({ sendHello: false });
  peer.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  assert.equal((await peer.goAway()).code, 'BAD_PREFACE');
});

test('a newer major version fails with VERSION_MISMATCH', async () => {
  const peer = new RawPeer({ sendHello: false });
  peer.write(Buffer.from('DFSWIRE\x02', 'latin1'));
  const goAway = await peer.goAway();
  assert.equal(goAway.code, 'VERSION_MISMATCH');
  assert.match(goAway.reason, /version 2/);
});

test('the refused REFUSED_STREAM code is marked retriable', async () => {
  const peer = new RawPeer({ settings: { maxConcurrentStreams: 0 } });
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), false));
  const f = await peer.waitFor((x) => x.type === FrameType.RESET);
  const reset = parseReset(f.payload, 1);
  assert.equal(reset.code, 'REFUSED_STREAM');
  peer.conn.destroy();
});

test('a long reason is cut so RESET fits the peer\'s smallest MAX_FRAME_SIZE', async () => {
  const peer = new RawPeer({ peerSettings: { maxFrameSize: 1024 } });
  await peer.conn.ready;
  peer.conn.on('stream', (s: WireStream) => { s.on('error', () => {}); s.destroy(new DfsError('NOT_FOUND', 'é'.repeat(2000))); });
  peer.write(encodeOpen(1, 0x10, 1, Buffer.alloc(0), true));
  const f = await peer.waitFor((x) => x.type === FrameType.RESET);
  assert.ok(f.payload.length <= 1024, `RESET payload of ${f.payload.length} bytes`);
  assert.equal(parseReset(f.payload, 1).code, 'NOT_FOUND');
  peer.conn.destroy();
});

test('a peer that sends but never reads is cut off once its queued output passes the limit', async () => {
  const [ours, theirs] = duplexPair(1024);
  const conn = new Connection(theirs, { role: 'server', limits: { maxBufferedOutput: 4096, pingsPerSecond: 10_000 } });
  const closed = new Promise<Error | null>((resolve) => conn.once('close', resolve));
  // Never read `ours`: every PONG the connection owes piles up on its side.
  ours.write(Buffer.concat([encodePreface(), encodeHello({}), ...Array.from({ length: 600 }, (_, i) => encodePing(Buffer.alloc(8, i)))]));
  const err = await closed;
  assert.match(String(err?.message), /not reading/);
  ours.destroy();
});
