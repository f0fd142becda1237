// The worker thread: SHA-256 and blocking chunk file IO, one request at a time, off the event loop.
// It imports nothing from dfs at run time so it starts fast; sessions keep a hash (and a file) between requests.

import { parentPort } from 'node:worker_threads';
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import type {
  Bytes,
  ReplyMessage,
  RequestMessage,
  Result,
  ScanResult,
  SessionMode,
  WireSafeError,
} from './protocol.js';

interface Session {
  mode: SessionMode;
  hash: Hash;
  fd: number | null;
  path: string | null;
  /** Next file position to write or read. */
  position: number;
  /** Hashed bytes so far. */
  bytes: number;
}

const sessions = new Map<number, Session>();

/** An error that crosses to the pool as a dfs code rather than an errno. */
class CodedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function view(b: Bytes): Uint8Array {
  return new Uint8Array(b.buffer, b.offset, b.length);
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) {
    done += fs.writeSync(fd, data, done, data.length - done, position + done);
  }
}

/** Reads until buf is full or the file ends; returns the bytes read. */
function readFull(fd: number, buf: Uint8Array, position: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function session(sid: number, create: boolean | undefined): Session {
  let s = sessions.get(sid);
  if (s === undefined && create) {
    s = { mode: 'hash', hash: createHash('sha256'), fd: null, path: null, position: 0, bytes: 0 };
    sessions.set(sid, s);
  }
  if (s === undefined) throw new CodedError('INTERNAL_ERROR', `worker session ${sid} is not open`);
  return s;
}

/** Closes and forgets a session; returns the descriptor it closed, if any. */
function drop(sid: number): number | undefined {
  const s = sessions.get(sid);
  if (s === undefined) return undefined;
  sessions.delete(sid);
  let closed: number | undefined;
  if (s.fd !== null) {
    closed = s.fd;
    try {
      fs.closeSync(s.fd);
    } catch {
      // The descriptor is gone either way; nothing useful to report while abandoning.
    }
  }
  return closed;
}

function fsyncDir(path: string): void {
  const fd = fs.openSync(path, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function handle(msg: RequestMessage, reply: ReplyMessage, transfer: ArrayBuffer[]): Result {
  switch (msg.op) {
    case 'sha256':
      return { digest: createHash('sha256').update(view(msg.data)).digest('hex') };

    case 'open': {
      if (sessions.has(msg.sid)) throw new CodedError('INTERNAL_ERROR', `worker session ${msg.sid} is already open`);
      const s: Session = { mode: msg.mode, hash: createHash('sha256'), fd: null, path: null, position: 0, bytes: 0 };
      if (msg.mode === 'write') {
        // 'wx': O_CREAT|O_EXCL, so a session never writes into a file someone else created.
        s.fd = fs.openSync(msg.path!, 'wx', 0o644);
        s.path = msg.path!;
        reply.fdOpened = s.fd;
        sessions.set(msg.sid, s);
        if (msg.prefix !== undefined) {
          writeAll(s.fd, view(msg.prefix), 0);
          s.position = msg.prefix.length;
        }
      } else if (msg.mode === 'read') {
        s.fd = fs.openSync(msg.path!, 'r');
        s.path = msg.path!;
        s.position = msg.position ?? 0;
        reply.fdOpened = s.fd;
        sessions.set(msg.sid, s);
      } else {
        sessions.set(msg.sid, s);
      }
      return {};
    }

    case 'update': {
      const s = session(msg.sid, msg.create);
      const data = view(msg.data);
      if (s.mode === 'write') {
        writeAll(s.fd!, data, s.position);
        s.position += data.length;
      }
      s.hash.update(data);
      s.bytes += data.length;
      return {};
    }

    case 'read': {
      const s = session(msg.sid, false);
      if (s.mode !== 'read') throw new CodedError('INTERNAL_ERROR', `worker session ${msg.sid} is not a read session`);
      const buffer = new ArrayBuffer(msg.length);
      const n = readFull(s.fd!, new Uint8Array(buffer), s.position);
      s.position += n;
      s.hash.update(new Uint8Array(buffer, 0, n));
      s.bytes += n;
      transfer.push(buffer);
      return { data: buffer, length: n };
    }

    case 'digest': {
      const s = session(msg.sid, msg.create);
      sessions.delete(msg.sid);
      try {
        if (s.fd !== null) {
          if (msg.fsync) fs.fsyncSync(s.fd);
          const fd = s.fd;
          s.fd = null;
          reply.fdClosed = fd;
          fs.closeSync(fd);
        }
        const digest = s.hash.digest('hex');
        if (msg.expect !== undefined && digest !== msg.expect) {
          throw new CodedError(
            'CHECKSUM_MISMATCH',
            `sha256 of ${s.bytes} bytes is ${digest}, expected ${msg.expect}`,
          );
        }
        if (msg.renameTo !== undefined) {
          fs.renameSync(s.path!, msg.renameTo);
          if (msg.syncDir !== undefined) fsyncDir(msg.syncDir);
        }
        return { digest, bytes: s.bytes };
      } finally {
        if (s.fd !== null) {
          reply.fdClosed = s.fd;
          try {
            fs.closeSync(s.fd);
          } catch {
            // Closing after a failed fsync; the fsync error is the one to report.
          }
        }
      }
    }

    case 'writeFile': {
      const fd = fs.openSync(msg.path, 'wx', 0o644);
      try {
        writeAll(fd, view(msg.data), 0);
        if (msg.fsync) fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      if (msg.renameTo !== undefined) {
        fs.renameSync(msg.path, msg.renameTo);
        if (msg.syncDir !== undefined) fsyncDir(msg.syncDir);
      }
      return {};
    }

    case 'writeAt': {
      const fd = fs.openSync(msg.path, msg.create ? 'wx' : 'r+', 0o644);
      try {
        writeAll(fd, view(msg.data), msg.position);
        if (msg.fsync) fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      if (msg.create && msg.syncDir !== undefined) fsyncDir(msg.syncDir);
      return {};
    }

    case 'abort': {
      const closed = drop(msg.sid);
      if (closed !== undefined) reply.fdClosed = closed;
      return {};
    }

    case 'readVerified': {
      const fd = fs.openSync(msg.path, 'r');
      try {
        if (msg.fileSize !== undefined) {
          const size = fs.fstatSync(fd).size;
          if (size !== msg.fileSize) {
            throw new CodedError('CHECKSUM_MISMATCH', `file is ${size} bytes, expected ${msg.fileSize}`);
          }
        }
        const buffer = new ArrayBuffer(msg.length);
        const bytes = new Uint8Array(buffer);
        const n = readFull(fd, bytes, msg.offset);
        if (n !== msg.length) {
          throw new CodedError('CHECKSUM_MISMATCH', `file ends after ${n} of ${msg.length} data bytes`);
        }
        const digest = createHash('sha256').update(bytes).digest('hex');
        if (digest !== msg.expect) {
          throw new CodedError('CHECKSUM_MISMATCH', `sha256 of ${n} bytes is ${digest}, expected ${msg.expect}`);
        }
        transfer.push(buffer);
        return { data: buffer, digest };
      } finally {
        fs.closeSync(fd);
      }
    }

    case 'scanDir': {
      const files = fs.readdirSync(msg.path, { withFileTypes: true }).filter((d) => d.isFile());
      const scan: ScanResult = {
        names: [],
        sizes: [],
        prefixLengths: [],
        prefixes: new ArrayBuffer(files.length * msg.prefixBytes),
        failed: [],
      };
      const all = new Uint8Array(scan.prefixes);
      for (const file of files) {
        let fd: number | null = null;
        try {
          fd = fs.openSync(`${msg.path}/${file.name}`, 'r');
          const size = fs.fstatSync(fd).size;
          const at = scan.names.length * msg.prefixBytes;
          const n = readFull(fd, all.subarray(at, at + msg.prefixBytes), 0);
          scan.names.push(file.name);
          scan.sizes.push(size);
          scan.prefixLengths.push(n);
        } catch (err) {
          scan.failed.push({ name: file.name, code: (err as NodeJS.ErrnoException).code ?? 'EIO' });
        } finally {
          if (fd !== null) fs.closeSync(fd);
        }
      }
      transfer.push(scan.prefixes);
      return { scan };
    }
  }
}

function toWireSafe(err: unknown): WireSafeError {
  if (err instanceof CodedError) return { message: err.message, code: err.code, dfs: true };
  const e = err as NodeJS.ErrnoException;
  const out: WireSafeError = { message: e?.message ?? String(err) };
  if (typeof e?.code === 'string') out.code = e.code;
  if (typeof e?.syscall === 'string') out.syscall = e.syscall;
  if (typeof e?.path === 'string') out.path = e.path;
  return out;
}

const port = parentPort;
if (port === null) throw new Error('dfs worker script must run in a worker thread');

port.on('message', (msg: RequestMessage) => {
  const reply: ReplyMessage = { id: msg.id, ok: true };
  const transfer: ArrayBuffer[] = [];
  try {
    reply.result = handle(msg, reply, transfer);
  } catch (err) {
    reply.ok = false;
    reply.error = toWireSafe(err);
    transfer.length = 0;
    // A session whose request failed is over: its hash no longer describes the file.
    if ('sid' in msg) {
      const closed = drop(msg.sid);
      if (closed !== undefined) reply.fdClosed = closed;
    }
  }
  port.postMessage(reply, transfer);
});

port.postMessage({ ready: true });
