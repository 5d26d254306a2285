// Preloaded (`--import`) into a README example run by scripts/readme-examples.test.ts, after tsx.
// - Registers readme-example-hooks.ts, which fails any @floodgate/* import that lands on a dist/ build.
// - A server example calls `.listen(3000)`; here it listens on port 0 instead (tests run in parallel and a
//   developer may have something on 3000) and sends each bound address to the parent over IPC.
import module from 'node:module';
import { type AddressInfo, Server } from 'node:net';
import { assertWorkspaceSource } from './readme-example-hooks.ts';

/** What the parent receives for each server listening instead of on the README's port. */
export interface ListeningMessage {
  type: 'listening';
  address: string;
  port: number;
}

/** The port the README examples listen on. */
const README_PORT = 3000;

// Synchronous in-thread hooks where Node has them (22.15+; @types/node 20 does not declare them), where tsx
// may use them too and a hooks thread would have no tsx to load a .ts file; module.register() before that.
type SyncResolve = (specifier: string, context: unknown) => { url: string };
const { registerHooks } = module as {
  registerHooks?: (hooks: {
    resolve: (specifier: string, context: unknown, next: SyncResolve) => unknown;
  }) => unknown;
};
if (registerHooks === undefined) {
  module.register('./readme-example-hooks.ts', import.meta.url);
} else {
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const resolved = nextResolve(specifier, context);
      assertWorkspaceSource(specifier, resolved.url);
      return resolved;
    },
  });
}

/** The TCP port a `listen(...)` call asks for (`listen(port, ...)` or `listen({ port, ... })`). */
function requestedPort([first]: unknown[]): number | undefined {
  if (typeof first === 'number' || typeof first === 'string') return Number(first);
  if (typeof first === 'object' && first !== null && 'port' in first) return Number(first.port);
  return undefined;
}

// Ports handed out instead of 3000: Fastify on `localhost` binds its main server, then one more server per
// other loopback address on the main one's port, and the test needs to know when the 127.0.0.1 one listens.
const movedPorts = new Set<number>();

const listen = Server.prototype.listen;
Server.prototype.listen = function listenOnAnyPort(this: Server, ...args: unknown[]): Server {
  const port = requestedPort(args);
  if (port === README_PORT) {
    const [first, ...rest] = args;
    args = [typeof first === 'object' ? { ...first, port: 0 } : 0, ...rest];
  } else if (port === undefined || !movedPorts.has(port)) {
    return Reflect.apply(listen, this, args);
  }
  this.once('listening', () => {
    const { address, port } = this.address() as AddressInfo;
    movedPorts.add(port);
    const message: ListeningMessage = { type: 'listening', address, port };
    process.send?.(message);
  });
  return Reflect.apply(listen, this, args);
} as typeof listen;
