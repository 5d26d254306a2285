import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { unixSocketClient, unixSocketPath } from '../../http/test/conformance.js';
import { socketAddressReader } from './client-address.js';
import { ClientAddressUnknownError, floodgateRateLimit } from './index.js';

/** A request as the reader sees it: `ip` counts its reads; `ips` exists only with trustProxy, as in Fastify. */
function fakeRequest(socket: object | null, ip: string | undefined, trustProxy = false) {
  const reads = { count: 0 };
  const request = {
    raw: { socket },
    get ip() {
      reads.count += 1;
      return ip;
    },
    ...(trustProxy ? { ips: ip === undefined ? [] : [ip] } : {}),
  };
  return { request: request as unknown as FastifyRequest, reads };
}

describe('socketAddressReader', () => {
  it('without trustProxy reads request.ip once per connection', () => {
    const read = socketAddressReader();
    const one = {};
    const two = {};
    const first = fakeRequest(one, '203.0.113.1');
    expect(read(first.request)).toBe('203.0.113.1');
    const again = fakeRequest(one, '203.0.113.1');
    expect(read(again.request)).toBe('203.0.113.1');
    expect(again.reads.count).toBe(0);
    const other = fakeRequest(two, '203.0.113.2');
    expect(read(other.request)).toBe('203.0.113.2');
    expect(other.reads.count).toBe(1);
  });

  it('with trustProxy asks request.ip every time (the address comes from X-Forwarded-For)', () => {
    const read = socketAddressReader();
    const socket = {};
    const first = fakeRequest(socket, '198.51.100.1', true);
    const second = fakeRequest(socket, '198.51.100.2', true);
    expect(read(first.request)).toBe('198.51.100.1');
    expect(read(second.request)).toBe('198.51.100.2');
    expect(second.reads.count).toBe(1);
  });

  it('keeps nothing for a connection without an address or a request without a socket', () => {
    const read = socketAddressReader();
    const socket = {};
    expect(read(fakeRequest(socket, undefined).request)).toBeUndefined();
    const later = fakeRequest(socket, '203.0.113.3');
    expect(read(later.request)).toBe('203.0.113.3');
    expect(later.reads.count).toBe(1);
    const detached = fakeRequest(null, '203.0.113.4');
    expect(read(detached.request)).toBe('203.0.113.4');
    expect(read(detached.request)).toBe('203.0.113.4');
    expect(detached.reads.count).toBe(2);
  });
});

describe('Fastify listening on a Unix socket, as behind nginx', () => {
  let warnings: MockInstance<typeof process.emitWarning>;
  let app: FastifyInstance | undefined;
  beforeEach(() => {
    warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    warnings.mockRestore();
  });

  const addressWarnings = () =>
    warnings.mock.calls.filter(([warning]) => warning instanceof ClientAddressUnknownError).length;

  /** Serves a one-request-per-client app with `trustProxy` set so, on a fresh Unix socket. */
  async function serve(trustProxy: boolean | number | string | ((address: string, hop: number) => boolean)) {
    app = Fastify({ trustProxy } as { trustProxy: boolean });
    await app.register(floodgateRateLimit, { limit: 1 });
    app.get('/', async () => ({ ok: true }));
    const path = unixSocketPath();
    await app.listen({ path });
    const client = unixSocketClient(path);
    return (address: string) =>
      client.request({ path: '/', headers: { 'x-forwarded-for': address } }).then((r) => r.status);
  }

  it('without trustProxy all clients are one, and the plugin says so once', async () => {
    const get = await serve(false);
    expect(await get('203.0.113.1')).toBe(200);
    expect(await get('203.0.113.2')).toBe(429);
    expect(await get('203.0.113.3')).toBe(429);
    expect(addressWarnings()).toBe(1);
  });

  const advised = [
    ['true', true],
    ['(address, hop) => hop === 0', (_address: string, hop: number) => hop === 0],
  ] as const;
  for (const [label, setting] of advised) {
    it(`trustProxy ${label} (what the warning advises) tells clients apart, with no warning`, async () => {
      const get = await serve(setting);
      expect(await get('203.0.113.1')).toBe(200);
      expect(await get('203.0.113.2')).toBe(200);
      expect(await get('203.0.113.1')).toBe(429);
      expect(addressWarnings()).toBe(0);
    });
  }

  for (const setting of [1, '127.0.0.1']) {
    it(`trustProxy ${JSON.stringify(setting)} trusts nothing there: warned, as the warning says`, async () => {
      const get = await serve(setting);
      expect(await get('203.0.113.1')).toBe(200);
      expect(await get('203.0.113.2')).toBe(429);
      expect(addressWarnings()).toBe(1);
    });
  }

  it('inject() (an address, 127.0.0.1) never warns', async () => {
    app = Fastify();
    await app.register(floodgateRateLimit, { limit: 1 });
    app.get('/', async () => ({ ok: true }));
    expect((await app.inject({ url: '/' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/', remoteAddress: '203.0.113.9' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/' })).statusCode).toBe(429);
    expect(addressWarnings()).toBe(0);
  });
});
