// Committed chunks kept in flat typed arrays, one slot per chunk: id, SHA-256, size, owning file
// and replicas in about 70 bytes, where objects, hex strings and arrays took several hundred.
// Keeper ids are interned to 16-bit numbers (a journal or a checkpoint would otherwise bring a new
// string per replica), and a chunk id finds its slot through an open-addressing hash table over
// the raw id bytes: no per-chunk string key, no Map entry.

import { DfsError } from '../wire/errors.js';

const ID_BYTES = 16;
const SHA_BYTES = 32;
/** Replicas kept in the slot itself; a chunk with more keeps its whole list in `extra`. */
const INLINE = 3;
const HEX_ID = /^[0-9a-f]{32}$/;

/** Keeper ids interned once: a replica is a 16-bit index into this list. Names are never dropped. */
export class KeeperNames {
  private readonly names: string[] = [];
  private readonly index = new Map<string, number>();

  intern(name: string): number {
    let i = this.index.get(name);
    if (i === undefined) {
      if (this.names.length > 0xffff) throw new DfsError('INTERNAL_ERROR', 'more than 65,536 distinct keeper ids');
      i = this.names.length;
      this.names.push(name);
      this.index.set(name, i);
    }
    return i;
  }

  /** The interned copy of `name`, so equal ids share one string. */
  canonical(name: string): string {
    return this.names[this.intern(name)];
  }

  lookup(name: string): number | undefined {
    return this.index.get(name);
  }

  name(i: number): string {
    return this.names[i];
  }

  get size(): number {
    return this.names.length;
  }
}

export class ChunkTable {
  readonly keepers = new KeeperNames();
  private cap = 0;
  private ids = Buffer.alloc(0);
  private shas = Buffer.alloc(0);
  private sizes = new Uint32Array(0);
  /** Owning file's slot; -1 for a free slot. */
  private owners = new Int32Array(0);
  private counts = new Uint8Array(0);
  private reps = new Uint16Array(0);
  private readonly extra = new Map<number, Uint16Array>();
  private readonly free: number[] = [];
  private used = 0;
  private live = 0;
  /** Hash table of slot + 1 (0 is empty), linear probing, at most 3/4 full. */
  private table = new Int32Array(16);
  private readonly scratch = Buffer.alloc(ID_BYTES);

  get count(): number {
    return this.live;
  }

  /** Makes room for `n` chunks in all, so a checkpoint of known size loads without regrowing. */
  reserve(n: number): void {
    if (n > this.cap) this.grow(n);
    let size = this.table.length;
    while (n > size * 0.75) size *= 2;
    if (size !== this.table.length) this.rehash(size);
  }

  private grow(min: number): void {
    const cap = Math.max(min, Math.ceil(this.cap * 1.5), 64);
    const ids = Buffer.alloc(cap * ID_BYTES);
    this.ids.copy(ids);
    const shas = Buffer.alloc(cap * SHA_BYTES);
    this.shas.copy(shas);
    const sizes = new Uint32Array(cap);
    sizes.set(this.sizes);
    const owners = new Int32Array(cap).fill(-1);
    owners.set(this.owners);
    const counts = new Uint8Array(cap);
    counts.set(this.counts);
    const reps = new Uint16Array(cap * INLINE);
    reps.set(this.reps);
    Object.assign(this, { cap, ids, shas, sizes, owners, counts, reps });
  }

  private hashAt(buf: Buffer, off: number): number {
    let h = buf.readInt32LE(off);
    h = Math.imul(h ^ buf.readInt32LE(off + 4), 0x9e3779b1);
    h = Math.imul(h ^ buf.readInt32LE(off + 8), 0x85ebca6b);
    h = Math.imul(h ^ buf.readInt32LE(off + 12), 0xc2b2ae35);
    return (h ^ (h >>> 15)) & (this.table.length - 1);
  }

  private rehash(size: number): void {
    const old = this.table;
    this.table = new Int32Array(size);
    for (let i = 0; i < old.length; i++) if (old[i] !== 0) this.place(old[i] - 1);
  }

  private place(slot: number): void {
    const mask = this.table.length - 1;
    let i = this.hashAt(this.ids, slot * ID_BYTES);
    while (this.table[i] !== 0) i = (i + 1) & mask;
    this.table[i] = slot + 1;
  }

  /** Probe position of the id in `scratch`: its entry, or the empty entry where it would go. */
  private probe(): number {
    const mask = this.table.length - 1;
    const s = this.scratch;
    const a = s.readInt32LE(0), b = s.readInt32LE(4), c = s.readInt32LE(8), d = s.readInt32LE(12);
    for (let i = this.hashAt(s, 0); ; i = (i + 1) & mask) {
      const e = this.table[i];
      if (e === 0) return i;
      const off = (e - 1) * ID_BYTES;
      const ids = this.ids;
      if (ids.readInt32LE(off) === a && ids.readInt32LE(off + 4) === b && ids.readInt32LE(off + 8) === c && ids.readInt32LE(off + 12) === d) {
        return i;
      }
    }
  }

  /** The slot of a committed chunk, or -1. */
  find(id: string): number {
    if (!HEX_ID.test(id)) return -1;
    this.scratch.write(id, 0, ID_BYTES, 'hex');
    return this.table[this.probe()] - 1;
  }

  /** Adds a chunk; the caller has checked that the id is new. Replicas are interned keeper indexes. */
  add(id: string, size: number, sha256: string, replicas: readonly number[], owner: number): number {
    const slot = this.take();
    this.ids.write(id, slot * ID_BYTES, ID_BYTES, 'hex');
    this.shas.write(sha256, slot * SHA_BYTES, SHA_BYTES, 'hex');
    this.fill(slot, size, replicas, owner);
    return slot;
  }

  /** Adds a chunk from raw bytes: `id` and `sha` are 16 and 32 bytes at the given offsets. */
  addRaw(src: Buffer, idAt: number, shaAt: number, size: number, replicas: readonly number[], owner: number): number {
    const slot = this.take();
    src.copy(this.ids, slot * ID_BYTES, idAt, idAt + ID_BYTES);
    src.copy(this.shas, slot * SHA_BYTES, shaAt, shaAt + SHA_BYTES);
    this.fill(slot, size, replicas, owner);
    return slot;
  }

  /** Whether the raw id at `src[at..at+16)` is already in the table. */
  hasRaw(src: Buffer, at: number): boolean {
    src.copy(this.scratch, 0, at, at + ID_BYTES);
    return this.table[this.probe()] !== 0;
  }

  private take(): number {
    if (this.free.length > 0) return this.free.pop()!;
    if (this.used === this.cap) this.grow(this.used + 1);
    return this.used++;
  }

  private fill(slot: number, size: number, replicas: readonly number[], owner: number): void {
    this.sizes[slot] = size;
    this.owners[slot] = owner;
    this.setReplicas(slot, replicas);
    if (this.live + 1 > this.table.length * 0.75) this.rehash(this.table.length * 2);
    this.place(slot);
    this.live++;
  }

  remove(slot: number): void {
    this.ids.copy(this.scratch, 0, slot * ID_BYTES, (slot + 1) * ID_BYTES);
    const mask = this.table.length - 1;
    let hole = this.probe();
    // Backward-shift deletion: later entries of the probe run move up, so no tombstones pile up.
    for (let j = (hole + 1) & mask; this.table[j] !== 0; j = (j + 1) & mask) {
      const home = this.hashAt(this.ids, (this.table[j] - 1) * ID_BYTES);
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!stays) {
        this.table[hole] = this.table[j];
        hole = j;
      }
    }
    this.table[hole] = 0;
    this.owners[slot] = -1;
    this.extra.delete(slot);
    this.free.push(slot);
    this.live--;
  }

  owner(slot: number): number {
    return this.owners[slot];
  }

  id(slot: number): string {
    return this.ids.toString('hex', slot * ID_BYTES, (slot + 1) * ID_BYTES);
  }

  sha256(slot: number): string {
    return this.shas.toString('hex', slot * SHA_BYTES, (slot + 1) * SHA_BYTES);
  }

  size(slot: number): number {
    return this.sizes[slot];
  }

  replicaIndexes(slot: number): number[] {
    const n = this.counts[slot];
    const list = n > INLINE ? this.extra.get(slot)! : this.reps.subarray(slot * INLINE, slot * INLINE + n);
    return Array.from(list);
  }

  replicas(slot: number): string[] {
    return this.replicaIndexes(slot).map((i) => this.keepers.name(i));
  }

  setReplicas(slot: number, replicas: readonly number[]): void {
    this.counts[slot] = replicas.length;
    if (replicas.length > INLINE) {
      this.extra.set(slot, Uint16Array.from(replicas));
    } else {
      this.extra.delete(slot);
      for (let i = 0; i < replicas.length; i++) this.reps[slot * INLINE + i] = replicas[i];
    }
  }

  hasReplica(slot: number, keeper: number): boolean {
    const n = this.counts[slot];
    if (n > INLINE) return this.extra.get(slot)!.includes(keeper);
    for (let i = 0; i < n; i++) if (this.reps[slot * INLINE + i] === keeper) return true;
    return false;
  }

  /** Slots of live chunks, in slot order; slots freed or reused meanwhile may be skipped or seen twice. */
  *liveSlots(): Generator<number, void, undefined> {
    for (let s = 0; s < this.used; s++) if (this.owners[s] >= 0) yield s;
  }

  /** Slots of live chunks with a replica on `keeper`. */
  slotsOnKeeper(keeper: number): number[] {
    const out: number[] = [];
    for (let s = 0; s < this.used; s++) if (this.owners[s] >= 0 && this.hasReplica(s, keeper)) out.push(s);
    return out;
  }

  /** The raw id and digest bytes, for checkpoints. */
  rawId(slot: number): Buffer {
    return this.ids.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES);
  }

  rawSha(slot: number): Buffer {
    return this.shas.subarray(slot * SHA_BYTES, (slot + 1) * SHA_BYTES);
  }
}
