// Command line for frame-dump.ts: parses arguments, reads a capture from a file or stdin, prints one line per frame.
// Exit codes: 0 the capture decoded cleanly, 1 it is malformed or truncated, 2 bad arguments or unreadable input.

import { createReadStream } from 'node:fs';
import { DEFAULT_SETTINGS, MAX_FRAME_SIZE_CEILING } from '../src/wire/index.js';
import { FrameDumper, formatEvent, formatEventJson, looksLikeHex, parseHex, type DumpEvent } from './frame-dump.js';

const USAGE = `usage: npm run decode -- [options] [FILE | -]
       node --import tsx tools/decode-frames.ts [options] [FILE | -]

Decodes a captured dfs wire byte stream and prints one line per frame: byte offset, type,
stream, flags, length and the decoded payload. Reads FILE, or stdin when FILE is - or absent.
The input is raw bytes, or hex text (digits, whitespace, ':' or ',' separators, optional 0x
prefixes, # comments), which is recognised on its own.

options:
  --hex                 read the input as hex text
  --binary              read the input as raw bytes, even if it looks like hex
  --no-preface          the capture starts at a frame, not at the 8-byte preface
  --max-frame-size N    largest payload accepted (default ${DEFAULT_SETTINGS.maxFrameSize}, at most ${MAX_FRAME_SIZE_CEILING})
  --json                print one JSON object per line instead of text; a violation or
                        truncation is also printed as an object (kind "error" or "truncated")
  -h, --help            print this help

exit status: 0 decoded cleanly, 1 malformed or truncated input, 2 bad arguments or unreadable input`;

interface CliOptions {
  input: 'auto' | 'hex' | 'binary';
  expectPreface: boolean;
  maxFrameSize: number;
  json: boolean;
  file: string | null;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): CliOptions | 'help' {
  const options: CliOptions = {
    input: 'auto', expectPreface: true, maxFrameSize: DEFAULT_SETTINGS.maxFrameSize, json: false, file: null,
  };
  const setInput = (mode: 'hex' | 'binary') => {
    if (options.input !== 'auto' && options.input !== mode) throw new UsageError('--hex and --binary exclude each other');
    options.input = mode;
  };
  let onlyFiles = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (onlyFiles || arg === '-' || !arg.startsWith('-')) {
      if (options.file !== null) throw new UsageError(`only one input file is accepted, got ${JSON.stringify(options.file)} and ${JSON.stringify(arg)}`);
      options.file = arg;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    if (inline !== undefined && name !== '--max-frame-size') throw new UsageError(`option ${name} takes no value`);
    switch (name) {
      case '--': onlyFiles = true; break;
      case '-h': case '--help': return 'help';
      case '--hex': setInput('hex'); break;
      case '--binary': setInput('binary'); break;
      case '--no-preface': options.expectPreface = false; break;
      case '--json': options.json = true; break;
      case '--max-frame-size': {
        const value = inline ?? argv[++i];
        if (value === undefined) throw new UsageError('--max-frame-size needs a number');
        options.maxFrameSize = parseSize(value);
        break;
      }
      default: throw new UsageError(`unknown option ${JSON.stringify(arg)}`);
    }
  }
  return options;
}

function parseSize(text: string): number {
  const n = /^(\d+|0x[0-9a-f]+)$/i.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n > MAX_FRAME_SIZE_CEILING) {
    throw new UsageError(`--max-frame-size must be an integer from 0 to ${MAX_FRAME_SIZE_CEILING}, got ${JSON.stringify(text)}`);
  }
  return n;
}

async function main(argv: string[]): Promise<number> {
  let options: CliOptions | 'help';
  try {
    options = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`decode-frames: ${err.message} (try --help)\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const fromStdin = options.file === null || options.file === '-';
  if (fromStdin && process.stdin.isTTY) {
    process.stderr.write('decode-frames: no input: give a FILE or pipe a capture into stdin (try --help)\n');
    return 2;
  }
  const source = fromStdin ? process.stdin : createReadStream(options.file!);
  const dumper = new FrameDumper({ expectPreface: options.expectPreface, maxFrameSize: options.maxFrameSize });
  let failed = false;
  const print = (events: DumpEvent[]) => {
    if (events.length === 0) return;
    let out = '';
    for (const event of events) {
      if (event.kind === 'error' || event.kind === 'truncated') {
        failed = true;
        process.stderr.write(`decode-frames: ${formatEvent(event)}\n`);
        if (options.json) out += `${formatEventJson(event)}\n`;
      } else {
        out += `${options.json ? formatEventJson(event) : formatEvent(event)}\n`;
      }
    }
    if (out !== '') process.stdout.write(out);
  };

  // Binary input is decoded as it arrives, so a live capture piped in shows frames at once. Hex text, or input
  // that may be hex, is gathered whole first: only the whole of it says whether it is hex.
  let mode: 'undecided' | 'gather' | 'binary' = options.input === 'binary' ? 'binary' : options.input === 'hex' ? 'gather' : 'undecided';
  const gathered: Buffer[] = [];
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (mode === 'undecided' && chunk.length > 0) mode = looksLikeHex(chunk) ? 'gather' : 'binary';
      if (mode === 'binary') {
        print(dumper.push(chunk));
        if (dumper.done) break;
      } else {
        gathered.push(chunk);
      }
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`decode-frames: cannot read ${fromStdin ? 'stdin' : JSON.stringify(options.file)}: ${e.code ?? e.message}${e.code ? ` (${e.message})` : ''}\n`);
    return 2;
  }
  if (mode !== 'binary') {
    const whole = Buffer.concat(gathered);
    let bytes: Buffer = whole;
    if (options.input === 'hex' || looksLikeHex(whole)) {
      try {
        bytes = parseHex(whole.toString('latin1'));
      } catch (err) {
        process.stderr.write(`decode-frames: ${(err as Error).message}\n`);
        return 1;
      }
    }
    print(dumper.push(bytes));
  }
  print(dumper.end());
  return failed ? 1 : 0;
}

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // A closed pipe (`| head`) is the reader's choice, not a failure.
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await main(process.argv.slice(2));
