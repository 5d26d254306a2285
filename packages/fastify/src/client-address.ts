import type { FastifyRequest } from 'fastify';

/**
 * The client address Fastify's `request.ip` gives, remembered per connection where that is safe. Without
 * `trustProxy` the address is the socket's peer, which never changes for a connection, yet every read of
 * `request.ip` walks three getters down to Node's `socket._getpeername()` (about 600 instructions per
 * request under callgrind, mostly megamorphic property loads); a WeakMap lookup by socket is a fraction
 * of that, and the entry goes with the socket. With `trustProxy` the address comes from
 * `X-Forwarded-For` per request, so every read goes through `request.ip` and the app's own rules. Fastify
 * documents `request.ips` as present only with `trustProxy`; that is how the setting is told, once, on
 * the first request (one Fastify instance has one setting).
 */
export function socketAddressReader(): (request: FastifyRequest) => string | undefined {
  const bySocket = new WeakMap<object, string>();
  let trustProxy: boolean | undefined;
  return (request) => {
    trustProxy ??= 'ips' in request;
    const socket = request.raw.socket as object | null | undefined;
    if (trustProxy || socket == null) return request.ip;
    let address = bySocket.get(socket);
    if (address === undefined) {
      address = request.ip;
      if (address !== undefined) bySocket.set(socket, address);
    }
    return address;
  };
}
