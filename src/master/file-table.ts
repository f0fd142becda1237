// Committed files kept in flat typed arrays, one slot per file, instead of one object per file, and
// directories' file entries kept with them: a file's name is UTF-8 bytes in a pool of 1 MiB blocks,
// not a JS string, and a directory finds a file by name through one open-addressing hash table
// over (directory, name bytes). At a million files that leaves no per-file object on the V8 heap:
// a string and a Map entry per file cost about 70 bytes, and loading a checkpoint made the young
// generation grow by as much again.

import { DfsError } from '../wire/errors.js';

const UPLOAD_BYTES = 16;
/** Longest name in UTF-8 bytes (MAX_NAME_BYTES of paths.ts); a length fits in one byte. */
const MAX_NAME = 255;
const BLOCK_BITS = 20;
const BLOCK = 1 << BLOCK_BITS;
/** A name's address is a 32-bit offset into the pool: at most 4,096 blocks of 1 MiB. */
const MAX_BLOCKS = 4096;
/** `firsts` marks: no chunk at all, or a list in `many`. */
const NONE = -1;
const MANY = -2;
/** `nexts` mark of a slot in no directory (free, or between unlinking and linking again). */
const UNLINKED = -2;

/**
 * The entries of one directory: subdirectories in a Map, files in the table's hash index and in a
 * list through the table in insertion order. Iteration gives the subdirectories, then the files.
 */
/** What the table needs of a directory: its entries. */
export interface HasChildren<Dir extends HasChildren<Dir>> {
  readonly children: Children<Dir>;
}

export class Children<Dir extends HasChildren<Dir>> {
  readonly dirs = new Map<string, Dir>();
  /** First and last file slot of the list, and how many files it holds. */
  first = -1;
  last = -1;
  files = 0;
  /** This directory's number in the table: what a file's slot records as its parent. */
  readonly key: number;

  constructor(private readonly table: FileTable<Dir>, dir: Dir) {
    this.key = table.register(dir);
  }

  get size(): number {
    return this.dirs.size + this.files;
  }

  get(name: string): Dir | number | undefined {
    const dir = this.dirs.get(name);
    if (dir !== undefined || this.files === 0) return dir;
    const slot = this.table.find(this.key, name);
    return slot < 0 ? undefined : slot;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Adds or replaces an entry, like Map.set. A file must already carry `name` and this parent. */
  set(name: string, node: Dir | number): void {
    const slot = this.files === 0 ? -1 : this.table.find(this.key, name);
    if (typeof node === 'number') {
      if (slot === node) return;
      if (slot >= 0) this.table.unlink(slot);
      this.dirs.delete(name);
      this.table.link(node);
    } else {
      if (slot >= 0) this.table.unlink(slot);
      this.dirs.set(name, node);
    }
  }

  delete(name: string): boolean {
    if (this.dirs.delete(name)) return true;
    const slot = this.files === 0 ? -1 : this.table.find(this.key, name);
    if (slot < 0) return false;
    this.table.unlink(slot);
    return true;
  }

  /** File slots in insertion order; the caller must not change this directory meanwhile. */
  *fileSlots(): Generator<number, void, undefined> {
    for (let s = this.first; s >= 0; s = this.table.nextInDir(s)) yield s;
  }

  *values(): Generator<Dir | number, void, undefined> {
    yield* this.dirs.values();
    yield* this.fileSlots();
  }

  *[Symbol.iterator](): Generator<[string, Dir | number], void, undefined> {
    yield* this.dirs;
    for (const s of this.fileSlots()) yield [this.table.name(s), s];
  }

  /** Forgets this directory once it and everything below it has been dropped. */
  release(): void {
    this.table.unregister(this.key);
  }
}

export class FileTable<Dir extends HasChildren<Dir>> {
  private cap = 0;
  /** Directories by key, so a slot's parent is a 32-bit number. */
  private readonly dirs: (Dir | undefined)[] = [];
  private readonly freeKeys: number[] = [];
  private parents = new Int32Array(0);
  private nameAt = new Uint32Array(0);
  private nameLens = new Uint8Array(0);
  /** The directory's file list: next and previous slot, -1 at either end; UNLINKED in `nexts`. */
  private nexts = new Int32Array(0);
  private prevs = new Int32Array(0);
  private mtimes = new Float64Array(0);
  private sizes = new Float64Array(0);
  private chunkSizes = new Uint32Array(0);
  private replications = new Uint8Array(0);
  private uploads = Buffer.alloc(0);
  /** The file's one chunk slot, or NONE, or MANY (slots in `many`): most files have one chunk. */
  private firsts = new Int32Array(0);
  private readonly many = new Map<number, Int32Array>();
  private readonly free: number[] = [];
  private used = 0;
  /** Name pool: names never straddle a block; bytes of dropped names are reclaimed by `compact`. */
  private blocks: Buffer[] = [];
  private poolEnd = 0;
  private poolWaste = 0;
  /** Hash index of linked slots + 1 (0 is empty), linear probing, at most 3/4 full. */
  private index = new Int32Array(16);
  private linked = 0;
  private readonly scratch = Buffer.alloc(MAX_NAME);

  /** Makes room for `n` files in all, so a checkpoint of known size loads without regrowing. */
  reserve(n: number): void {
    if (n > this.cap) this.grow(n);
    let size = this.index.length;
    while (n > size * 0.75) size *= 2;
    if (size !== this.index.length) this.rehash(size);
  }

  private grow(min: number): void {
    const cap = Math.max(min, Math.ceil(this.cap * 1.5), 64);
    const widen = <T extends Float64Array | Uint32Array | Int32Array | Uint8Array>(old: T, make: (n: number) => T): T => {
      const a = make(cap);
      a.set(old);
      return a;
    };
    const nexts = new Int32Array(cap).fill(UNLINKED);
    nexts.set(this.nexts);
    const uploads = Buffer.alloc(cap * UPLOAD_BYTES);
    this.uploads.copy(uploads);
    Object.assign(this, {
      cap,
      nexts,
      uploads,
      parents: widen(this.parents, (n) => new Int32Array(n)),
      nameAt: widen(this.nameAt, (n) => new Uint32Array(n)),
      nameLens: widen(this.nameLens, (n) => new Uint8Array(n)),
      prevs: widen(this.prevs, (n) => new Int32Array(n)),
      mtimes: widen(this.mtimes, (n) => new Float64Array(n)),
      sizes: widen(this.sizes, (n) => new Float64Array(n)),
      chunkSizes: widen(this.chunkSizes, (n) => new Uint32Array(n)),
      replications: widen(this.replications, (n) => new Uint8Array(n)),
      firsts: widen(this.firsts, (n) => new Int32Array(n)),
    });
  }

  // ---- directories ---------------------------------------------------------------------------

  register(dir: Dir): number {
    const key = this.freeKeys.length > 0 ? this.freeKeys.pop()! : this.dirs.length;
    this.dirs[key] = dir;
    return key;
  }

  unregister(key: number): void {
    this.dirs[key] = undefined;
    this.freeKeys.push(key);
  }

  // ---- names ---------------------------------------------------------------------------------

  /** Room for a name of `len` bytes in the pool: its address. */
  private claim(len: number): number {
    if (this.blocks.length === 0 || (this.poolEnd & (BLOCK - 1)) + len > BLOCK) {
      if (this.blocks.length > 0) {
        const next = this.blocks.length << BLOCK_BITS;
        this.poolWaste += next - this.poolEnd;
        this.poolEnd = next;
      }
      if (this.blocks.length === MAX_BLOCKS) {
        throw new DfsError('INTERNAL_ERROR', `file names take more than ${MAX_BLOCKS} MiB; the master cannot hold more files`);
      }
      this.blocks.push(Buffer.allocUnsafeSlow(BLOCK));
    }
    const at = this.poolEnd;
    this.poolEnd += len;
    return at;
  }

  private block(slot: number): Buffer {
    return this.blocks[this.nameAt[slot] >>> BLOCK_BITS];
  }

  private offset(slot: number): number {
    return this.nameAt[slot] & (BLOCK - 1);
  }

  private setName(slot: number, name: string): void {
    const len = Buffer.byteLength(name, 'utf8');
    if (len > MAX_NAME) throw new DfsError('INTERNAL_ERROR', `file name of ${len} bytes is longer than ${MAX_NAME}`);
    const at = this.claim(len);
    this.blocks[at >>> BLOCK_BITS].write(name, at & (BLOCK - 1), len, 'utf8');
    this.nameAt[slot] = at;
    this.nameLens[slot] = len;
  }

  private setRawName(slot: number, src: Buffer, start: number, len: number): void {
    const at = this.claim(len);
    src.copy(this.blocks[at >>> BLOCK_BITS], at & (BLOCK - 1), start, start + len);
    this.nameAt[slot] = at;
    this.nameLens[slot] = len;
  }

  /** A name stops using pool bytes; once most of the pool is dead, the live names move together. */
  private dropName(slot: number): void {
    this.poolWaste += this.nameLens[slot];
    this.nameLens[slot] = 0;
    if (this.poolWaste > 8 * BLOCK && this.poolWaste > this.poolEnd / 2) this.compact();
  }

  private compact(): void {
    const old = this.blocks;
    this.blocks = [];
    this.poolEnd = 0;
    this.poolWaste = 0;
    for (let s = 0; s < this.used; s++) {
      if (this.parents[s] < 0) continue;
      const from = this.nameAt[s];
      this.setRawName(s, old[from >>> BLOCK_BITS], from & (BLOCK - 1), this.nameLens[s]);
    }
  }

  name(slot: number): string {
    const off = this.offset(slot);
    return this.block(slot).toString('utf8', off, off + this.nameLens[slot]);
  }

  /** The name's UTF-8 bytes, for checkpoints; valid until the table changes. */
  rawName(slot: number): Buffer {
    const off = this.offset(slot);
    return this.block(slot).subarray(off, off + this.nameLens[slot]);
  }

  // ---- the hash index over (directory, name) -------------------------------------------------

  private hashOf(key: number, src: Buffer, at: number, len: number): number {
    let h = Math.imul(key ^ 0x9e3779b9, 0x85ebca6b) ^ len;
    for (let i = at; i < at + len; i++) h = Math.imul(h ^ src[i], 0x01000193);
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
    return (h ^ (h >>> 12)) & (this.index.length - 1);
  }

  private hashOfSlot(slot: number): number {
    return this.hashOf(this.parents[slot], this.block(slot), this.offset(slot), this.nameLens[slot]);
  }

  private rehash(size: number): void {
    const old = this.index;
    this.index = new Int32Array(size);
    for (let i = 0; i < old.length; i++) if (old[i] !== 0) this.place(old[i] - 1);
  }

  private place(slot: number): void {
    const mask = this.index.length - 1;
    let i = this.hashOfSlot(slot);
    while (this.index[i] !== 0) i = (i + 1) & mask;
    this.index[i] = slot + 1;
  }

  /** The linked file named by `src[at..at+len)` in directory `key`, or -1. */
  findRaw(key: number, src: Buffer, at: number, len: number): number {
    const mask = this.index.length - 1;
    for (let i = this.hashOf(key, src, at, len); ; i = (i + 1) & mask) {
      const e = this.index[i];
      if (e === 0) return -1;
      const s = e - 1;
      if (this.parents[s] === key && this.nameLens[s] === len) {
        const off = this.offset(s);
        if (src.compare(this.block(s), off, off + len, at, at + len) === 0) return s;
      }
    }
  }

  find(key: number, name: string): number {
    // A name longer than any stored one (255 UTF-8 bytes) is never found.
    if (name.length * 3 > MAX_NAME && Buffer.byteLength(name, 'utf8') > MAX_NAME) return -1;
    const len = this.scratch.write(name, 0, 'utf8');
    return this.findRaw(key, this.scratch, 0, len);
  }

  /** Appends the slot to its directory's file list and the hash index. */
  link(slot: number): void {
    const list = this.children(slot);
    this.prevs[slot] = list.last;
    this.nexts[slot] = -1;
    if (list.last >= 0) this.nexts[list.last] = slot;
    else list.first = slot;
    list.last = slot;
    list.files++;
    if (this.linked + 1 > this.index.length * 0.75) this.rehash(this.index.length * 2);
    this.place(slot);
    this.linked++;
  }

  unlink(slot: number): void {
    const list = this.children(slot);
    const next = this.nexts[slot];
    const prev = this.prevs[slot];
    if (prev >= 0) this.nexts[prev] = next;
    else list.first = next;
    if (next >= 0) this.prevs[next] = prev;
    else list.last = prev;
    list.files--;
    this.nexts[slot] = UNLINKED;
    const mask = this.index.length - 1;
    let hole = this.hashOfSlot(slot);
    while (this.index[hole] !== slot + 1) hole = (hole + 1) & mask;
    // Backward-shift deletion: later entries of the probe run move up, so no tombstones pile up.
    for (let j = (hole + 1) & mask; this.index[j] !== 0; j = (j + 1) & mask) {
      const home = this.hashOfSlot(this.index[j] - 1);
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!stays) {
        this.index[hole] = this.index[j];
        hole = j;
      }
    }
    this.index[hole] = 0;
    this.linked--;
  }

  nextInDir(slot: number): number {
    return this.nexts[slot];
  }

  private children(slot: number): Children<Dir> {
    return this.dirs[this.parents[slot]]!.children;
  }

  // ---- files ---------------------------------------------------------------------------------

  private take(): number {
    const slot = this.free.length > 0 ? this.free.pop()! : this.used++;
    if (slot >= this.cap) this.grow(slot + 1);
    return slot;
  }

  private fill(slot: number, parent: number, mtime: number, size: number, replication: number, chunkSize: number): void {
    this.parents[slot] = parent;
    this.mtimes[slot] = mtime;
    this.sizes[slot] = size;
    this.replications[slot] = replication;
    this.chunkSizes[slot] = chunkSize;
    this.firsts[slot] = NONE;
  }

  /** A new file, in no directory's list until `link` (or its directory's `set`). */
  add(name: string, parent: number, mtime: number, size: number, replication: number, chunkSize: number, uploadId: string): number {
    const slot = this.take();
    this.setName(slot, name);
    this.fill(slot, parent, mtime, size, replication, chunkSize);
    this.uploads.write(uploadId, slot * UPLOAD_BYTES, UPLOAD_BYTES, 'hex');
    return slot;
  }

  /** `add` from raw bytes: the name is `src[nameAt..nameAt+nameLen)`, the upload id 16 bytes at `uploadAt`. */
  addRaw(src: Buffer, nameAt: number, nameLen: number, parent: number, mtime: number, size: number, replication: number,
    chunkSize: number, uploadAt: number): number {
    if (nameLen > MAX_NAME) throw new DfsError('INTERNAL_ERROR', `file name of ${nameLen} bytes is longer than ${MAX_NAME}`);
    const slot = this.take();
    this.setRawName(slot, src, nameAt, nameLen);
    this.fill(slot, parent, mtime, size, replication, chunkSize);
    src.copy(this.uploads, slot * UPLOAD_BYTES, uploadAt, uploadAt + UPLOAD_BYTES);
    return slot;
  }

  /** Sets the file's chunk slots, in file order. */
  setChunks(slot: number, chunks: readonly number[]): void {
    this.many.delete(slot);
    if (chunks.length === 0) this.firsts[slot] = NONE;
    else if (chunks.length === 1) this.firsts[slot] = chunks[0];
    else {
      this.firsts[slot] = MANY;
      this.many.set(slot, Int32Array.from(chunks));
    }
  }

  /** Frees the slot, leaving its directory first if it is still in one. */
  remove(slot: number): void {
    if (this.nexts[slot] !== UNLINKED) this.unlink(slot);
    this.parents[slot] = -1;
    this.many.delete(slot);
    this.free.push(slot);
    this.dropName(slot);
  }

  parent(slot: number): Dir {
    return this.dirs[this.parents[slot]]!;
  }

  /** A rename: the same file under another name or directory. It must not be linked. */
  move(slot: number, name: string, parent: number): void {
    this.dropName(slot);
    this.setName(slot, name);
    this.parents[slot] = parent;
  }

  mtime(slot: number): number {
    return this.mtimes[slot];
  }

  size(slot: number): number {
    return this.sizes[slot];
  }

  replication(slot: number): number {
    return this.replications[slot];
  }

  chunkSize(slot: number): number {
    return this.chunkSizes[slot];
  }

  uploadId(slot: number): string {
    return this.uploads.toString('hex', slot * UPLOAD_BYTES, (slot + 1) * UPLOAD_BYTES);
  }

  rawUploadId(slot: number): Buffer {
    return this.uploads.subarray(slot * UPLOAD_BYTES, (slot + 1) * UPLOAD_BYTES);
  }

  chunkCount(slot: number): number {
    const first = this.firsts[slot];
    return first >= 0 ? 1 : first === NONE ? 0 : this.many.get(slot)!.length;
  }

  /** The file's chunk slots in file order. */
  chunks(slot: number): ArrayLike<number> {
    const first = this.firsts[slot];
    return first >= 0 ? [first] : first === NONE ? [] : this.many.get(slot)!;
  }
}
