#!/usr/bin/env node
// The `dfs` binary: dispatches to a subcommand, turns errors into one line on stderr and an exit code.

import { DfsError } from '../wire/errors.js';
import type { CliIO, Command } from './command.js';
import { serverCommands } from './server-commands.js';
import { clientCommands } from './client-commands.js';

const VERSION = '0.1.0';
const commands: Record<string, Command> = { ...serverCommands, ...clientCommands };

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `dfs ${VERSION}: a distributed file system

usage: dfs <command> [options]

commands:
${lines.join('\n')}

Client commands take the master from --master HOST:PORT or DFS_MASTER.
Run dfs <command> --help for a command's options.`;
}

export async function main(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    // A mistake, not a request for help: the usage goes where errors go.
    io.stderr.write(`${usage()}\n`);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(`${usage()}\n`);
    return 0;
  }
  if (name === '--version' || name === 'version') {
    io.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    io.stderr.write(`dfs: unknown command '${name}'; run dfs --help for the list\n`);
    return 2;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof DfsError) {
      io.stderr.write(`dfs ${name}: ${err.message} (${err.code})\n`);
      // Stopped by Ctrl-C: the shell's convention, 128 + SIGINT (the caller makes it 143 for SIGTERM).
      if (err.code === 'CANCEL' && io.signal.aborted) return 130;
      return err.code === 'INVALID_ARGUMENT' ? 2 : 1;
    }
    // Not a DfsError: an operating-system error (a port in use, a directory that cannot be made)
    // or a bug. One line for people; the stack when DFS_DEBUG is set.
    const e = err as NodeJS.ErrnoException;
    const detail = io.env.DFS_DEBUG ? (e?.stack ?? String(err)) : (e?.message ?? String(err)).split('\n')[0];
    io.stderr.write(`dfs ${name}: ${detail}${e?.code ? ` (${e.code})` : ''}\n`);
    return 1;
  }
}

/** 128 + the signal's number. */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;
let stoppedBy: keyof typeof SIGNAL_EXIT | null = null;

const controller = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    // A second signal means: stop now.
    if (controller.signal.aborted) process.exit(SIGNAL_EXIT[sig]);
    stoppedBy = sig;
    controller.abort();
  });
}
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
});

main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: controller.signal })
  .then((result) => {
    const code = result === SIGNAL_EXIT.SIGINT && stoppedBy !== null ? SIGNAL_EXIT[stoppedBy] : result;
    process.exitCode = code;
    // Long-running roles have closed their servers; short commands may hold pooled connections.
    setTimeout(() => process.exit(code), 100).unref();
  });
