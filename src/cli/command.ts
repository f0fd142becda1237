// What every `dfs` subcommand is: a summary for the index, usage for --help, and a run function
// that returns the exit code. Errors thrown as DfsError become one line on stderr.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DfsError } from '../wire/errors.js';

export interface CliIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  /** Aborted on SIGINT/SIGTERM, so long commands stop cleanly. */
  signal: AbortSignal;
}

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[], io: CliIO): Promise<number>;
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** util.parseArgs with errors turned into INVALID_ARGUMENT that name the command. */
export interface ParsedArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

export function parseCommandArgs(command: string, argv: string[], options: Options, maxPositionals = Infinity): ParsedArgs {
  try {
    const parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    if (parsed.positionals.length > maxPositionals && !parsed.values.help) {
      throw new DfsError('INVALID_ARGUMENT', `too many arguments (${parsed.positionals.join(' ')}); see dfs ${command} --help`);
    }
    return parsed;
  } catch (err) {
    if (err instanceof DfsError) throw err;
    throw new DfsError('INVALID_ARGUMENT', `${parseArgsProblem(err as NodeJS.ErrnoException, argv, options)}; see dfs ${command} --help`);
  }
}

/** util.parseArgs's error as one line that says what was wrong (its own messages span three). */
export function parseArgsProblem(err: NodeJS.ErrnoException, argv: readonly string[], options: Options): string {
  const first = (err.message ?? String(err)).split('\n')[0]!.trim();
  // "Option '-c, --chunk-size <value>' …": the long name when there is one, else the short.
  const quoted = /^(?:Unknown option|Option) '([^']+)'/.exec(first)?.[1] ?? '';
  const names = quoted.replace(/ <value>$/, '').split(', ');
  const name = names[names.length - 1] ?? '';
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${name}`;
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const long = name.startsWith('--') ? name : `--${Object.entries(options).find(([, o]) => o.short === name.slice(1))?.[0] ?? name.slice(1)}`;
    if (/does not take an argument/.test(first)) return `option ${long} takes no value`;
    if (/argument missing/.test(first)) return `option ${long} needs a value`;
    if (/ambiguous/.test(first)) {
      const at = argv.findIndex((a) => a === name);
      const value = at >= 0 ? argv[at + 1] : undefined;
      return value === undefined
        ? `option ${long} needs a value; a value starting with '-' must be written as ${long}=VALUE`
        : `option ${long} needs a value; '${value}' starts with '-' and is not taken as one: write ${long}=${value} to pass it`;
    }
  }
  return first.replace(/\.$/, '');
}

/** Parses a byte count such as 1048576, 64MiB, 10G; throws INVALID_ARGUMENT naming the option. */
export function parseBytes(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$/i.exec(text.trim());
  if (!m) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' is not a byte count such as 1048576, 8MiB or 10GB`);
  const unit = (m[2] ?? 'b').toLowerCase().replace(/b$/, '').replace(/i$/, '');
  const power = { '': 0, k: 1, m: 2, g: 3, t: 4 }[unit] ?? 0;
  const value = Number(m[1]) * 1024 ** power;
  if (value > Number.MAX_SAFE_INTEGER) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' is too large`);
  if (!Number.isInteger(value)) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' is not a whole number of bytes`);
  return value;
}

/** Parses a positive integer option; throws INVALID_ARGUMENT naming the option. */
export function parseIntOption(text: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' is not a whole number`);
  const value = Number(text);
  if (value < min || value > max) throw new DfsError('INVALID_ARGUMENT', `${what} ${value} is outside ${min}..${max}`);
  return value;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration such as 500ms, 30s, 10m, 2h or 1d. A bare number other than 0 is refused (is 90
 * seconds or milliseconds?) unless `bareMs`, for options documented in milliseconds.
 */
export function parseDuration(text: string, what: string, opts: { bareMs?: boolean } = {}): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' is not a duration such as 500ms, 30s, 10m or 2h`);
  if (m[2] === undefined && !opts.bareMs && Number(m[1]) !== 0) {
    throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' needs a unit: ${text}ms, ${text}s, ${text}m or ${text}h`);
  }
  const value = Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
  if (!Number.isSafeInteger(value)) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' is too long`);
  return value;
}
