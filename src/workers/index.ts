// Worker threads for SHA-256 and chunk file IO, off the event loop.
export * from './pool.js';
export * from './hasher.js';
export * from './file-io.js';
export * from './errors.js';
export type { ScanResult } from './protocol.js';
