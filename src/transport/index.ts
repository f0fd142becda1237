// The transport: dfs wire connections and streams over any duplex byte stream.
export * from './connection.js';
export * from './stream.js';
export * from './limits.js';
export * from './rpc.js';
export * from './net.js';
export * from './memory.js';
export * from './echo.js';
export * from './window-growth.js';
