// Where a keeper's replicas sit on disk, whether in a chunk file of their own or in a pack, read
// straight from the data directory as a person inspecting it would: tests use it to damage or
// audit stored bytes without going through the keeper.

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CHUNK_HEADER_SIZE, decodeChunkHeader } from '../../src/keeper/chunk-header.js';

export interface StoredReplica {
  id: string;
  /** The file holding the chunk: chunks/ab/<id>, or a pack. */
  file: string;
  /** Where the chunk's data starts in that file. */
  dataOffset: number;
  size: number;
  packed: boolean;
}

/** Every live replica in a keeper's data directory, sorted by id. */
export async function storedReplicas(keeperDir: string): Promise<StoredReplica[]> {
  const out: StoredReplica[] = [];
  const chunks = join(keeperDir, 'chunks');
  for (const fan of await readdir(chunks).catch(() => [])) {
    for (const name of await readdir(join(chunks, fan)).catch(() => [])) {
      const file = join(chunks, fan, name);
      const bytes = await readFile(file).catch(() => null);
      if (bytes === null) continue;
      out.push({ id: name, file, dataOffset: CHUNK_HEADER_SIZE, size: bytes.length - CHUNK_HEADER_SIZE, packed: false });
    }
  }
  const packs = join(keeperDir, 'packs');
  for (const name of (await readdir(packs).catch(() => [])).filter((n) => n.endsWith('.pack'))) {
    const file = join(packs, name);
    const bytes = await readFile(file).catch(() => null);
    if (bytes === null) continue;
    const deadList = await readFile(file.replace(/\.pack$/, '.deleted')).catch(() => Buffer.alloc(0));
    // Entries of 16 bytes: the record's offset and the first 8 bytes of its chunk id.
    const dead = new Map<number, string>();
    for (let at = 0; at + 16 <= deadList.length; at += 16) dead.set(Number(deadList.readBigUInt64BE(at)), deadList.toString('hex', at + 8, at + 16));
    for (let pos = 0; pos + CHUNK_HEADER_SIZE <= bytes.length;) {
      const h = decodeChunkHeader(bytes.subarray(pos));
      if ('invalid' in h) break;
      if (dead.get(pos) !== h.id.slice(0, 16)) out.push({ id: h.id, file, dataOffset: pos + CHUNK_HEADER_SIZE, size: h.size, packed: true });
      pos += CHUNK_HEADER_SIZE + h.size;
    }
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** The replica of `id` in a keeper's data directory; throws if there is none. */
export async function storedReplica(keeperDir: string, id: string): Promise<StoredReplica> {
  const found = (await storedReplicas(keeperDir)).find((r) => r.id === id);
  if (found === undefined) throw new Error(`chunk ${id} is not stored in ${keeperDir}`);
  return found;
}

/** The bytes of a stored replica's data. */
export async function replicaData(r: StoredReplica): Promise<Buffer> {
  return (await readFile(r.file)).subarray(r.dataOffset, r.dataOffset + r.size);
}
