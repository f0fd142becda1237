// dfs paths: absolute, '/'-separated and canonical. The state machine accepts only canonical paths, so
// one file has exactly one spelling in the log; `normalisePath` turns user input into that spelling.
import { DfsError } from '../wire/errors.js';

/** Longest path, in UTF-8 bytes, counting every '/'. */
export const MAX_PATH_BYTES = 4096;
/** Longest name of one file or directory, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;

// A lone surrogate has no UTF-8 form: it would turn into U+FFFD on the wire and name another file.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\x01-\x1f\x7f]/;

// One UTF-16 unit is at most 3 UTF-8 bytes, so short strings skip the byte count.
function utf8Length(s: string): number {
  return s.length * 3 <= MAX_NAME_BYTES ? s.length : Buffer.byteLength(s, 'utf8');
}

/** Why `path` is not a canonical dfs path, or undefined when it is. */
export function pathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'a path must be a string';
  if (path.length === 0) return 'the path is empty';
  if (path.charCodeAt(0) !== 0x2f) return "the path is not absolute (it must start with '/')";
  if (path.length === 1) return undefined;
  if (path.length * 3 > MAX_PATH_BYTES && Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) {
    return `the path is ${Buffer.byteLength(path, 'utf8')} bytes long, more than the limit of ${MAX_PATH_BYTES}`;
  }
  if (path.includes('\0')) return 'the path contains a NUL character';
  // Control characters (newline, tab, escape...) make names that break listings and terminals.
  const control = CONTROL_CHARACTER.exec(path);
  if (control) return `the path contains the control character U+${control[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}`;
  if (LONE_SURROGATE.test(path)) return 'the path contains an unpaired UTF-16 surrogate, which has no UTF-8 form';
  let start = 1;
  while (start <= path.length) {
    let end = path.indexOf('/', start);
    if (end === -1) end = path.length;
    const name = path.slice(start, end);
    if (name.length === 0) {
      return end === path.length ? 'the path ends with \'/\'' : "the path has an empty name ('//')";
    }
    if (name === '.' || name === '..') return `the path contains '${name}', which dfs paths may not use`;
    const bytes = utf8Length(name);
    if (bytes > MAX_NAME_BYTES) {
      return `the name "${name.slice(0, 16)}…" is ${bytes} bytes long, more than the limit of ${MAX_NAME_BYTES}`;
    }
    start = end + 1;
  }
  return undefined;
}

/** Throws INVALID_ARGUMENT, naming the operation and the problem, unless `path` is canonical. */
export function checkPath(op: string, path: unknown): string {
  const problem = pathProblem(path);
  if (problem !== undefined) {
    // The problem first: a long path would push it past the end of a RESET's reason.
    // JSON escapes the C0 controls; DEL and the C1 controls are escaped too, so none reaches a terminal.
    const shown = JSON.stringify(path).replace(/[\x7f-\x9f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    throw new DfsError('INVALID_ARGUMENT', `${op}: ${problem}: ${shown.length > 200 ? `${shown.slice(0, 200)}…` : shown}`);
  }
  return path as string;
}

/** The names of a canonical path, root first; [] for '/'. */
export function splitPath(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

/** The path made of the first `count` names. */
export function joinNames(names: readonly string[], count = names.length): string {
  if (count === 0) return '/';
  let out = '';
  for (let i = 0; i < count; i++) out += '/' + names[i];
  return out;
}

export function parentPath(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

/** True when `path` is `ancestor` or lies below it. */
export function isSameOrBelow(path: string, ancestor: string): boolean {
  if (ancestor === '/') return true;
  return path === ancestor || (path.startsWith(ancestor) && path.charCodeAt(ancestor.length) === 0x2f);
}

/**
 * The canonical form of a path typed by a person: repeated and trailing slashes are dropped.
 * '.' and '..' are refused rather than resolved, because resolving them needs a working directory
 * that only the client has. Throws INVALID_ARGUMENT when no canonical form exists.
 */
export function normalisePath(input: string): string {
  if (typeof input !== 'string' || !input.startsWith('/')) return checkPath('path', input);
  const names = input.split('/').filter((n) => n.length > 0);
  return checkPath('path', joinNames(names));
}
