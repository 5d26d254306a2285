// Preloaded (`--import`, after tsx) into a README example, by scripts/readme-examples.test.ts (through
// readme-example-preload.ts) and by scripts/consumer-install.ts: a server example calls `.listen(3000)`;
// here it listens on port 0 instead (runs go in parallel and a developer may have something on 3000) and
// sends each bound address to the parent over IPC.
import { type AddressInfo, Server } from 'node:net';

/** What the parent receives for each server listening instead of on the README's port. */
export interface ListeningMessage {
  type: 'listening';
  address: string;
  port: number;
}

/** The port the README examples listen on. */
const README_PORT = 3000;

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
