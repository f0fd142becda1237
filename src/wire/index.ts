// The wire codec: pure, IO-free encoding and decoding of dfs wire frames.
export * from './constants.js';
export * from './errors.js';
export * from './fields.js';
export * from './frames.js';
export * from './decoder.js';
