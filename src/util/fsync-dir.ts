// fsync of a directory: makes a rename or a new file inside it durable, not only the file's bytes.

import { open } from 'node:fs/promises';

export async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
