// Live-connection fuzzing: random, mutated and split frame streams are fed to a real Connection
// with an echo server behind it. Whatever arrives, the process never throws, the connection
// either keeps serving or closes with a registered code, and memory stays within the windows.
// A failure prints its seed: replay with DFS_FUZZ_SEED=... DFS_FUZZ_CASE=...

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Connection, RpcServer, duplexPair, registerEcho, type WireStream } from '../src/transport/index.js';
import { ERRORS, encodePreface, encodeHello, type ErrorCode } from '../src/wire/index.js';
import { createRng, deriveSeed, formatSeed, fuzzCount, fuzzSeed, mutate, randomFrameSequence, splitRandomly } from './helpers/fuzz.js';

const MAX_FRAME = 4096;
const STREAM_WINDOW = 8192;
const CONNECTION_WINDOW = 32768;

async function runOne(seed: number, caseIndex: number): Promise<void> {
  const rng = createRng(deriveSeed(seed, 'connection', caseIndex));
  const where = `seed=${formatSeed(seed)} case=${caseIndex} (replay with DFS_FUZZ_SEED=${formatSeed(seed)} DFS_FUZZ_CASE=${caseIndex})`;
  const [ours, theirs] = duplexPair();
  const conn = new Connection(theirs, {
    role: 'server',
    settings: { maxFrameSize: MAX_FRAME, streamWindow: STREAM_WINDOW, connectionWindow: CONNECTION_WINDOW, maxConcurrentStreams: 8 },
    limits: { helloTimeoutMs: 200 },
  });
  const streams: WireStream[] = [];
  conn.on('stream', (s: WireStream) => streams.push(s));
  registerEcho(new RpcServer()).serve(conn);
  let closeErr: unknown = undefined;
  conn.on('close', (err: unknown) => { closeErr = err; });
  ours.on('data', () => {});
  ours.on('error', () => {});

  const seq = randomFrameSequence(rng, { expectPreface: false, maxFrameSize: MAX_FRAME, frames: rng.int(1, 40) });
  let body = seq.bytes;
  if (rng.bool()) body = mutate(rng, body, seq.offsets);
  const head = rng.int(0, 9) === 0 ? mutate(rng, Buffer.concat([encodePreface(), encodeHello({})])) : Buffer.concat([encodePreface(), encodeHello({})]);
  for (const piece of splitRandomly(rng, Buffer.concat([head, body]))) {
    ours.write(piece);
    if (rng.int(0, 3) === 0) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 5));

  for (const s of streams) {
    assert.ok(s.readableLength <= STREAM_WINDOW, `${where}: a stream buffered ${s.readableLength} bytes, above its window`);
  }
  if (closeErr !== undefined && closeErr !== null) {
    const code = (closeErr as { code?: string }).code;
    assert.ok(code !== undefined && code in ERRORS, `${where}: closed with an unregistered error ${String(closeErr)}`);
    // INTERNAL_ERROR may come from the peer's own GOAWAY; raised here, it means an exception escaped a handler.
    const message = String((closeErr as Error).message);
    assert.ok(!(code as ErrorCode === 'INTERNAL_ERROR' && message.includes('while handling a frame')), `${where}: a handler threw: ${message}`);
  }
  conn.destroy();
  ours.destroy();
}

test('random and mutated frame streams never crash a live connection or grow its memory', async () => {
  const seed = fuzzSeed();
  const only = process.env.DFS_FUZZ_CASE;
  const count = fuzzCount(300);
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  try {
    for (let i = only ? Number(only) : 0; i < (only ? Number(only) + 1 : count); i++) {
      await runOne(seed, i);
      assert.deepEqual(uncaught, [], `seed=${formatSeed(seed)} case=${i}: uncaught exception`);
    }
  } finally {
    process.off('uncaughtException', onUncaught);
  }
});
