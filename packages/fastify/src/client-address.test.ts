import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { socketAddressReader } from './client-address.js';

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
