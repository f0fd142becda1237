// Committed files kept in flat typed arrays, one slot per file, instead of one object per file:
// the name and parent directory are the only per-file references left on the heap.

const UPLOAD_BYTES = 16;
/** `firsts` marks: no chunk at all, or a list in `many`. */
const NONE = -1;
const MANY = -2;

export class FileTable<Dir> {
  private cap = 0;
  private names: string[] = [];
  private parents: (Dir | null)[] = [];
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

  reserve(n: number): void {
    if (n > this.cap) this.grow(n);
  }

  private grow(min: number): void {
    const cap = Math.max(min, Math.ceil(this.cap * 1.5), 64);
    const mtimes = new Float64Array(cap);
    mtimes.set(this.mtimes);
    const sizes = new Float64Array(cap);
    sizes.set(this.sizes);
    const chunkSizes = new Uint32Array(cap);
    chunkSizes.set(this.chunkSizes);
    const replications = new Uint8Array(cap);
    replications.set(this.replications);
    const uploads = Buffer.alloc(cap * UPLOAD_BYTES);
    this.uploads.copy(uploads);
    const firsts = new Int32Array(cap);
    firsts.set(this.firsts);
    Object.assign(this, { cap, mtimes, sizes, chunkSizes, replications, uploads, firsts });
  }

  add(name: string, parent: Dir, mtime: number, size: number, replication: number, chunkSize: number, uploadId: string): number {
    const slot = this.free.length > 0 ? this.free.pop()! : this.used++;
    if (slot >= this.cap) this.grow(slot + 1);
    this.names[slot] = name;
    this.parents[slot] = parent;
    this.mtimes[slot] = mtime;
    this.sizes[slot] = size;
    this.replications[slot] = replication;
    this.chunkSizes[slot] = chunkSize;
    this.uploads.write(uploadId, slot * UPLOAD_BYTES, UPLOAD_BYTES, 'hex');
    this.firsts[slot] = NONE;
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

  remove(slot: number): void {
    this.names[slot] = '';
    this.parents[slot] = null;
    this.many.delete(slot);
    this.free.push(slot);
  }

  name(slot: number): string {
    return this.names[slot];
  }

  parent(slot: number): Dir {
    return this.parents[slot]!;
  }

  /** A rename: the same file under another name or directory. */
  move(slot: number, name: string, parent: Dir): void {
    this.names[slot] = name;
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
