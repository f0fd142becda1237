// With splitData the decoder hands DATA payloads over in the pieces they arrived in (no copy of a
// frame that spans two reads), and the pieces must still add up to exactly the frame.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Flag, FrameDecoder, FrameType, encodeData, encodeCredit, type RawFrame } from '../src/wire/index.js';

test('DATA pieces add up to the payload at every split point, and only the last keeps END_STREAM', () => {
  const payload = randomBytes(3000);
  const bytes = Buffer.concat([encodeData(5, payload, true), encodeCredit(5, 7)]);
  for (let cut = 0; cut <= bytes.length; cut++) {
    for (const pieces of [[bytes.subarray(0, cut), bytes.subarray(cut)], [...bytes].map((b) => Buffer.from([b]))]) {
      const decoder = new FrameDecoder({ maxFrameSize: 65536, expectPreface: false, splitData: true });
      const got: RawFrame[] = [];
      for (const p of pieces) decoder.push(p, (f) => got.push(f));
      const data = got.filter((f) => f.type === FrameType.DATA);
      assert.ok(data.every((f) => f.payload.length > 0), `cut ${cut}: an empty piece`);
      assert.ok(Buffer.concat(data.map((f) => f.payload)).equals(payload), `cut ${cut}: pieces differ from the payload`);
      assert.deepEqual(data.map((f) => (f.flags & Flag.END_STREAM) !== 0), data.map((_, i) => i === data.length - 1), `cut ${cut}`);
      assert.equal(got.at(-1)!.type, FrameType.CREDIT, `cut ${cut}: the frame after DATA was lost`);
    }
  }
});

test('an empty DATA frame is still delivered whole when splitting', () => {
  const decoder = new FrameDecoder({ maxFrameSize: 65536, expectPreface: false, splitData: true });
  const got: RawFrame[] = [];
  decoder.push(encodeData(3, Buffer.alloc(0), true), (f) => got.push(f));
  assert.equal(got.length, 1);
  assert.equal(got[0]!.flags & Flag.END_STREAM, Flag.END_STREAM);
});

test('a piece is a view of the bytes read, not a copy', () => {
  const decoder = new FrameDecoder({ maxFrameSize: 65536, expectPreface: false, splitData: true });
  const frame = encodeData(1, randomBytes(1000), false);
  const first = frame.subarray(0, 500);
  const got: RawFrame[] = [];
  decoder.push(first, (f) => got.push(f));
  decoder.push(frame.subarray(500), (f) => got.push(f));
  assert.equal(got[0]!.payload.buffer, frame.buffer, 'the first piece should share memory with the read');
});
