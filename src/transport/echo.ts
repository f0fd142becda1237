// ECHO (op 0x0001): replies with the request body. Used by tests, fuzzing and the wire benchmark.

import { defineOperation, RpcServer } from './rpc.js';

export const ECHO = defineOperation({
  name: 'ECHO',
  op: 0x0001,
  version: 1,
  request: {},
  response: {},
});

export function registerEcho(server: RpcServer): RpcServer {
  return server.register(ECHO, ({ body }) => ({ response: {}, body }));
}
