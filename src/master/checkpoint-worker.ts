// The checkpoint worker thread: builds checkpoint N from the previous checkpoint and the closed
// journal segments before N, off the master's event loop. Posts { bytes, files } or { error }.

import { parentPort, workerData } from 'node:worker_threads';
import { compact } from './metadata-store.js';

const { dir, base, from, to } = workerData as { dir: string; base: number | null; from: number; to: number };
compact(dir, base, from, to).then(
  (result) => parentPort!.postMessage(result),
  (err: Error) => parentPort!.postMessage({ error: err.message }),
);
