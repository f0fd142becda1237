// The frame decoder for people, run as a real process: people paste its output into bug reports and scripts
// branch on its exit code, so offsets, names, error codes and exit statuses must be exactly right.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_SETTINGS, FRAME_HEADER_LENGTH, FrameType, HelloExtension, PREFACE_LENGTH, encodeCredit, encodeData,
  encodeFields, encodeFrame, encodeGoAway, encodeHello, encodeOpen, encodePing, encodePong, encodePreface,
  encodeReply, encodeReset,
} from '../src/wire/index.js';
import { looksLikeHex, parseHex } from '../tools/frame-dump.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = ['--import', 'tsx', 'tools/decode-frames.ts'];

interface Run { code: number | null; stdout: string; stderr: string }

function run(args: string[], stdin?: Buffer | string, command: [string, string[]] = [process.execPath, CLI]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0], [...command[1], ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

let dir = '';
async function file(name: string, content: Buffer | string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** Output lines that describe frames: offset, type, stream, flags, length, payload. */
const FRAME_LINE = /^\s*(\d+)\s+(\S+)\s+stream=(\d+) flags=(\S+) length=(\d+)(?:\s+(.*))?$/;
function parseLine(line: string) {
  const m = FRAME_LINE.exec(line);
  assert.ok(m, `not a frame line: ${JSON.stringify(line)}`);
  return { offset: Number(m[1]), type: m[2]!, streamId: Number(m[3]), flags: m[4]!, length: Number(m[5]), payload: m[6] ?? '' };
}
const lines = (text: string) => text.split('\n').filter((l) => l !== '');

// A capture of a whole connection with every frame type, built with the encoders from these values.
const agent = 'dfs/0.1.0 (test)';
const path = '/photos/2026/été.jpg';
const data = Buffer.from('chunk 0 of a file that is longer than the preview');
const reason = 'client gave up';
const opaque = Buffer.from('0011223344556677', 'hex');
const frames: { bytes: Buffer; type: string; streamId: number; flags: string; payload: string[] }[] = [
  { bytes: encodeHello({ maxFrameSize: 32_768, idleTimeoutMs: 0 }, [[HelloExtension.AGENT, Buffer.from(agent)]]),
    type: 'HELLO', streamId: 0, flags: '-', payload: ['MAX_FRAME_SIZE=32768', 'IDLE_TIMEOUT_MS=0', `AGENT=${JSON.stringify(agent)}`] },
  { bytes: encodeOpen(1, 7, 2, encodeFields([[1, Buffer.from(path)], [2, Buffer.from([0, 0, 0, 0, 0, 1, 0, 0])]]), false),
    type: 'OPEN', streamId: 1, flags: '-', payload: ['op=7 opVersion=2', `0x0001=${JSON.stringify(path)}`, '0x0002=0000000000010000'] },
  { bytes: encodeData(1, data, true),
    type: 'DATA', streamId: 1, flags: 'END_STREAM', payload: [`data=${data.length} bytes ${data.subarray(0, 16).toString('hex')}…`, `|${data.subarray(0, 16).toString('latin1')}…|`] },
  { bytes: encodeCredit(0, 65_536), type: 'CREDIT', streamId: 0, flags: '-', payload: ['increment=65536'] },
  { bytes: encodeFrame(0xe7, 0x04, 3, Buffer.from('grease')),
    type: 'UNKNOWN(0xe7)', streamId: 3, flags: '0x04', payload: ['grease frame type, 6 payload bytes skipped'] },
  { bytes: encodeReset(3, 'CANCEL', 4096, reason),
    type: 'RESET', streamId: 3, flags: '-', payload: [`code=CANCEL(0x07) finalSize=4096 reason=${JSON.stringify(reason)}`] },
  { bytes: encodeReset(5, 0x4242, 0), type: 'RESET', streamId: 5, flags: '-', payload: ['code=0x4242(unknown, read as INTERNAL_ERROR)'] },
  { bytes: encodePing(opaque), type: 'PING', streamId: 0, flags: '-', payload: [`opaque=${opaque.toString('hex')}`] },
  { bytes: encodePong(opaque), type: 'PONG', streamId: 0, flags: '-', payload: [`opaque=${opaque.toString('hex')}`] },
  { bytes: encodeReply(1, encodeFields([[9, Buffer.from([0x00, 0x01])]]), true), type: 'REPLY', streamId: 1, flags: 'END_STREAM', payload: ['0x0009=0001'] },
  { bytes: encodeGoAway(5, 'NO_ERROR', 'shutting down'), type: 'GOAWAY', streamId: 0, flags: '-', payload: ['lastStreamId=5 code=NO_ERROR(0x00) reason="shutting down"'] },
];
const offsets: number[] = [];
for (let at = PREFACE_LENGTH, i = 0; i < frames.length; at += frames[i]!.bytes.length, i++) offsets.push(at);
const capture = Buffer.concat([encodePreface(), ...frames.map((f) => f.bytes)]);
const afterHello = Buffer.concat(frames.slice(1).map((f) => f.bytes));

function assertWholeCapture(out: Run): void {
  assert.equal(out.stderr, '');
  assert.equal(out.code, 0);
  const [first, ...rest] = lines(out.stdout);
  assert.match(first!, /^\s*0\s+PREFACE\s+"DFSWIRE" major version 1$/);
  assert.equal(rest.length, frames.length);
  for (const [i, line] of rest.entries()) {
    const got = parseLine(line);
    const want = frames[i]!;
    assert.deepEqual(
      [got.offset, got.type, got.streamId, got.flags, got.length],
      [offsets[i], want.type, want.streamId, want.flags, want.bytes.length - FRAME_HEADER_LENGTH], line);
    for (const part of want.payload) assert.ok(got.payload.includes(part), `${JSON.stringify(part)} missing from ${line}`);
  }
}

describe('decode-frames', { concurrency: 4 }, () => {
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'dfs-decode-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('prints one line per frame of a binary capture: offset, type, stream, flags by name, length and payload', async () => {
    assertWholeCapture(await run([await file('capture.bin', capture)]));
  });

  it('recognises hex text on its own, in every accepted spelling, and decodes it like the binary', async () => {
    // Shapes people paste: spaced pairs with comments, 0x-prefixed C arrays, colon-separated, one long run.
    const pairs = capture.toString('hex').match(/../g)!;
    const spellings = [
      `# a capture\n${pairs.join(' ').replace(/(.{48})/g, '$1\n')}  # end\n`,
      pairs.map((p) => `0x${p.toUpperCase()}`).join(', '),
      pairs.join(':'),
      `0x${capture.toString('hex')}`,
    ];
    for (const text of spellings) {
      assert.ok(looksLikeHex(Buffer.from(text)), text);
      assert.equal(parseHex(text).toString('hex'), capture.toString('hex'));
    }
    assert.equal(looksLikeHex(capture), false, 'a binary capture with a preface never reads as hex');
    // The CLI itself: detected in a file, and forced from stdin.
    const runs = await Promise.all([run([await file('capture.hex', spellings[0]!)]), run(['--hex', '-'], spellings[1])]);
    for (const out of runs) assertWholeCapture(out);
  });

  it('reads a binary capture from stdin', async () => {
    const runs = await Promise.all([run(['-'], capture), run([], capture)]);
    for (const out of runs) assertWholeCapture(out);
  });

  it('prints one JSON object per line with --json', async () => {
    const out = await run(['--json', await file('json.bin', capture)]);
    assert.equal(out.code, 0);
    const events = lines(out.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(events[0], { kind: 'preface', offset: 0, version: 1 });
    assert.deepEqual(events.slice(1).map((e) => [e.kind, e.offset, e.type, e.streamId]),
      frames.map((f, i) => ['frame', offsets[i], f.type, f.streamId]));
    const hello = events[1]!.payload as { settings: { name: string; value: number }[]; extensions: { name: string; text: string }[] };
    assert.deepEqual(hello.settings.map((s) => [s.name, s.value]), [['MAX_FRAME_SIZE', 32_768], ['IDLE_TIMEOUT_MS', 0]]);
    assert.deepEqual(hello.extensions.map((e) => [e.name, e.text]), [['AGENT', agent]]);
    const reset = events[6]!.payload as { code: string; finalSize: number; reason: string };
    assert.deepEqual([reset.code, reset.finalSize, reset.reason], ['CANCEL', 4096, reason]);
    assert.deepEqual(events[3]!.flagNames, ['END_STREAM']);
  });

  it('decodes a capture without preface with --no-preface, whether or not it starts at the HELLO', async () => {
    const withHello = await run(['--no-preface', '--json', await file('np1.bin', capture.subarray(PREFACE_LENGTH))]);
    assert.equal(withHello.code, 0, withHello.stderr);
    assert.deepEqual(lines(withHello.stdout).map((l) => JSON.parse(l).type), frames.map((f) => f.type));
    const midway = await run(['--no-preface', await file('np2.bin', afterHello)]);
    assert.equal(midway.code, 0, midway.stderr);
    assert.deepEqual(lines(midway.stdout).map((l) => parseLine(l).offset), offsets.slice(1).map((o) => o - offsets[1]!));
  });

  it('reports a malformed frame with its byte offset, frame and error code, after the frames before it, and exits 1', async () => {
    // PING belongs to the connection: on stream 9 it is a PROTOCOL_ERROR at the header.
    const badAt = capture.length;
    const out = await run([await file('bad-stream.bin', Buffer.concat([capture, encodeFrame(FrameType.PING, 0, 9, opaque)]))]);
    assert.equal(out.code, 1);
    assert.equal(lines(out.stdout).length, 1 + frames.length, 'every frame before the bad one is printed');
    assert.match(out.stderr, new RegExp(`^decode-frames: malformed input at byte ${badAt} \\(PING frame on stream 9\\): PROTOCOL_ERROR: .*stream 0`));
    assert.equal(lines(out.stderr).length, 1);

    // A payload the header checks cannot see: a CREDIT of zero.
    const zero = Buffer.concat([encodePreface(), frames[0]!.bytes, encodeFrame(FrameType.CREDIT, 0, 3, Buffer.alloc(4))]);
    const credit = await run(['--json', await file('zero-credit.bin', zero)]);
    assert.equal(credit.code, 1);
    assert.match(credit.stderr, new RegExp(`malformed input at byte ${offsets[1]} \\(CREDIT frame on stream 3\\): PROTOCOL_ERROR: CREDIT increment 0`));
    const last = JSON.parse(lines(credit.stdout).at(-1)!);
    assert.deepEqual([last.kind, last.offset, last.code, last.at, last.streamId], ['error', offsets[1], 'PROTOCOL_ERROR', 'CREDIT', 3]);

    // The limit is the receiver's: the same DATA frame is fine at the default and too large below it.
    const dataLength = frames[2]!.bytes.length - FRAME_HEADER_LENGTH;
    const small = await run(['--max-frame-size', String(dataLength - 1), await file('limit.bin', capture)]);
    assert.equal(small.code, 1);
    assert.match(small.stderr, new RegExp(`malformed input at byte ${offsets[2]} \\(DATA frame on stream 1\\): FRAME_SIZE_ERROR: .*${dataLength} bytes`));
    assert.equal((await run([`--max-frame-size=${dataLength}`, await file('limit-ok.bin', capture)])).code, 0);

    const http = await run([await file('http.bin', 'GET / HTTP/1.1\r\n\r\n')]);
    assert.equal(http.code, 1);
    assert.match(http.stderr, /malformed input at byte 0 \(the preface\): BAD_PREFACE: byte 0 of the preface/);
  });

  it('says which frame truncated input cuts short and how many bytes are missing, and exits 1', async () => {
    const dataAt = offsets[2]!;
    const dataSize = frames[2]!.bytes.length;
    const cut = dataAt + FRAME_HEADER_LENGTH + 5;
    const payload = await run([await file('cut-payload.bin', capture.subarray(0, cut))]);
    assert.equal(payload.code, 1);
    assert.equal(lines(payload.stdout).length, 3, 'the preface, HELLO and OPEN are printed');
    assert.equal(payload.stderr, `decode-frames: truncated input at byte ${dataAt}: DATA frame on stream 1 needs ${dataSize} bytes `
      + `(9-byte header, ${dataSize - 9}-byte payload), only ${cut - dataAt} present, ${dataSize - (cut - dataAt)} missing\n`);

    const header = await run(['--hex', await file('cut-header.hex', capture.subarray(0, dataAt + 4).toString('hex'))]);
    assert.equal(header.code, 1);
    assert.match(header.stderr, new RegExp(`truncated input at byte ${dataAt}: DATA frame \\(header\\) needs 9 bytes, only 4 present, 5 missing`));

    const preface = await run([await file('cut-preface.bin', capture.subarray(0, 3))]);
    assert.equal(preface.code, 1);
    assert.match(preface.stderr, /truncated input at byte 0: the preface needs 8 bytes, only 3 present, 5 missing/);
  });

  it('rejects bad arguments with one line on stderr and exit code 2', async () => {
    const cases = [
      ['--frob'],
      ['--max-frame-size'],
      ['--max-frame-size', 'lots'],
      ['--max-frame-size', String(2 ** 24)],
      ['--json=yes'],
      ['--hex', '--binary'],
      ['one.bin', 'two.bin'],
      [join(dir, 'no-such-file.bin')],
    ];
    const runs = await Promise.all(cases.map((args) => run(args)));
    for (const [i, out] of runs.entries()) {
      const args = cases[i]!;
      assert.equal(out.code, 2, `${args.join(' ')}: ${out.stderr}`);
      assert.equal(out.stdout, '');
      assert.equal(lines(out.stderr).length, 1, out.stderr);
      assert.match(out.stderr, /^decode-frames: /);
    }
  });

  it('treats text that is not valid hex as malformed input when --hex is given', async () => {
    const odd = await run(['--hex', '-'], '44 46 5');
    assert.equal(odd.code, 1);
    assert.match(odd.stderr, /odd number of digits \(5\)/);
    const bad = await run(['--hex', '-'], '44 46\n53 zz');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unexpected character "z" at line 2, column 4/);
  });

  it('prints usage with --help, also through npm run decode', async () => {
    const out = await run(['--help']);
    assert.equal(out.code, 0);
    for (const option of ['--hex', '--binary', '--no-preface', '--max-frame-size', '--json', '--help']) {
      assert.ok(out.stdout.includes(option), `usage lacks ${option}`);
    }
    assert.ok(out.stdout.includes(`default ${DEFAULT_SETTINGS.maxFrameSize}`));
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const viaNpm = await run(['--help'], undefined, [npm, ['run', '--silent', 'decode', '--']]);
    assert.equal(viaNpm.code, 0);
    assert.equal(viaNpm.stdout, out.stdout);
  });
});
