import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addressKey, byAddress, byApiKey, byUser } from './client-key.js';
import { InvalidOptionError } from './errors.js';

describe('addressKey', () => {
  it('keeps IPv4 addresses as they are', () => {
    expect(addressKey('203.0.113.9')).toBe('203.0.113.9');
  });

  it('keys IPv4-mapped IPv6 as the IPv4 address', () => {
    expect(addressKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('::ffff:cb00:7109')).toBe('203.0.113.9');
  });

  it('groups IPv6 addresses by /56 by default', () => {
    expect(addressKey('2001:db8:1234:5678::1')).toBe('2001:db8:1234:5600::/56');
    expect(addressKey('2001:db8:1234:56ff:ffff:ffff:ffff:ffff')).toBe('2001:db8:1234:5600::/56');
    expect(addressKey('2001:db8:1234:5778::1')).toBe('2001:db8:1234:5700::/56');
  });

  it('honours another prefix, or none', () => {
    expect(addressKey('2001:db8:1234:5678:9abc::1', 64)).toBe('2001:db8:1234:5678::/64');
    expect(addressKey('2001:db8:1234:5678:9abc::1', 48)).toBe('2001:db8:1234::/48');
    expect(addressKey('2001:DB8::0001', false)).toBe('2001:db8::1');
  });

  it('drops a zone id and handles embedded IPv4 and loopback', () => {
    expect(addressKey('fe80::1%eth0', false)).toBe('fe80::1');
    expect(addressKey('::1', false)).toBe('::1');
    expect(addressKey('::1')).toBe('::/56');
    expect(addressKey('64:ff9b::192.0.2.33', false)).toBe('64:ff9b::c000:221');
  });

  it('answers "unknown" without an address and passes other strings through', () => {
    expect(addressKey(undefined)).toBe('unknown');
    expect(addressKey('')).toBe('unknown');
    expect(addressKey('not:an:address')).toBe('not:an:address');
  });

  it('property: every address of one /56 shares a key, the neighbouring /56 does not', () => {
    const group = fc.integer({ min: 0, max: 0xffff });
    fc.assert(
      fc.property(
        fc.array(group, { minLength: 8, maxLength: 8 }),
        fc.array(group, { minLength: 8, maxLength: 8 }),
        (a, b) => {
          // Same first 56 bits: groups 0..2 and the high byte of group 3.
          const mixed = [
            a[0],
            a[1],
            a[2],
            ((a[3] as number) & 0xff00) | ((b[3] as number) & 0xff),
            b[4],
            b[5],
            b[6],
            b[7],
          ];
          const text = (g: readonly (number | undefined)[]) =>
            g.map((x) => (x as number).toString(16)).join(':');
          if (a[0] === 0) return; // ::/8 contains the IPv4-mapped range
          expect(addressKey(text(mixed))).toBe(addressKey(text(a)));
          const other = [...a];
          other[3] = ((a[3] as number) + 0x100) & 0xffff;
          expect(addressKey(text(other))).not.toBe(addressKey(text(a)));
        },
      ),
    );
  });
});

describe('key generators', () => {
  it('byAddress reads req.ip with the configured subnet', () => {
    expect(byAddress()({ ip: '2001:db8:1:2:3::4', headers: {} })).toBe('2001:db8:1::/56');
    expect(byAddress({ ipv6Subnet: 64 })({ ip: '2001:db8:1:2:3::4', headers: {} })).toBe('2001:db8:1:2::/64');
  });

  it('byAddress rejects a bad subnet and unknown options', () => {
    expect(() => byAddress({ ipv6Subnet: 0 })).toThrow(InvalidOptionError);
    expect(() => byAddress({ ipv6Subnet: 129 })).toThrow(/ipv6Subnet/);
    expect(() => byAddress({ subnet: 56 } as never)).toThrow(/Unknown option `subnet`/);
  });

  it('byUser prefixes the id and falls back (undefined) for anonymous requests', () => {
    const key = byUser((req: { user?: { id: number } }) => req.user?.id);
    expect(key({ user: { id: 7 } })).toBe('user:7');
    expect(key({})).toBeUndefined();
    const named = byUser((req: { user?: string | null }) => req.user);
    expect(named({ user: null })).toBeUndefined();
    expect(named({ user: '' })).toBeUndefined();
    expect(() => byUser('id' as never)).toThrow(InvalidOptionError);
  });

  it('byApiKey hashes the key, never returns it raw, and reads Bearer tokens', () => {
    const key = byApiKey();
    const k = key({ headers: { 'x-api-key': 'secret-123' } });
    expect(k).toMatch(/^key:[\w-]{22}$/);
    expect(k).not.toContain('secret');
    expect(key({ headers: { 'x-api-key': 'secret-124' } })).not.toBe(k);
    expect(key({ headers: {} })).toBeUndefined();
    const bearer = byApiKey({ header: 'Authorization' });
    expect(bearer({ headers: { authorization: 'Bearer secret-123' } })).toBe(k);
    expect(bearer({ headers: { authorization: 'Basic abc' } })).toBeUndefined();
    // A key up to 4096 characters is hashed; a longer one counts as none (the client address keys it).
    expect(key({ headers: { 'x-api-key': 'k'.repeat(4096) } })).toMatch(/^key:/);
    expect(key({ headers: { 'x-api-key': 'k'.repeat(4097) } })).toBeUndefined();
    expect(() => byApiKey({ header: '' })).toThrow(/`header`/);
  });

  it('byApiKey strips only HTTP whitespace (SP, HTAB): a key ending in a no-break space is another key', () => {
    const key = byApiKey();
    const k = key({ headers: { 'x-api-key': 'secret-123' } });
    expect(key({ headers: { 'x-api-key': ' \tsecret-123\t ' } })).toBe(k);
    // Node hands an obs-text byte 0xA0 over as U+00A0, which String.prototype.trim() removes.
    for (const space of ['\u00a0', '\u0085', '\u2003', '\u3000', '\ufeff']) {
      const name = `U+${space.charCodeAt(0).toString(16)}`;
      expect(key({ headers: { 'x-api-key': `secret-123${space}` } }), name).not.toBe(k);
      expect(key({ headers: { 'x-api-key': `${space}secret-123` } }), name).not.toBe(k);
    }
    // Nothing but a no-break space is a key of its own too, not "no key" (the address).
    expect(key({ headers: { 'x-api-key': '\u00a0' } })).toMatch(/^key:/);
  });

  it('byApiKey reads a Bearer token after SP or HTAB only, like the field itself', () => {
    const bearer = byApiKey({ header: 'authorization' });
    const k = bearer({ headers: { authorization: 'Bearer secret-123' } });
    expect(bearer({ headers: { authorization: 'bearer \t secret-123 ' } })).toBe(k);
    expect(bearer({ headers: { authorization: 'Bearer secret-123\u00a0' } })).not.toBe(k);
    // `Bearer<NBSP>x` is no Bearer scheme at all: the request falls back to its address.
    expect(bearer({ headers: { authorization: 'Bearer\u00a0secret-123' } })).toBeUndefined();
    expect(bearer({ headers: { authorization: '\u00a0Bearer secret-123' } })).toBeUndefined();
  });

  it('keys pathological 64 KB addresses and API keys, each refused by its length or scanned once', () => {
    // With trust proxy on, `req.ip` is an X-Forwarded-For entry the client wrote.
    const addresses = [
      '1:'.repeat(32_768),
      '::'.repeat(32_768),
      `::1%${'a'.repeat(65_536)}`, // a zone of any length: keyed as `::1`, grouped
      `${'ffff:'.repeat(13_107)}g`,
      `::${'1.'.repeat(32_768)}`,
      `${'a:'.repeat(7)}${'a'.repeat(65_536)}`,
    ];
    for (const address of addresses) {
      expect(typeof addressKey(address)).toBe('string');
    }
    const bearer = byApiKey({ header: 'authorization' });
    expect(bearer({ headers: { authorization: `Bearer${' \t'.repeat(32_768)}` } })).toBeUndefined();
    expect(bearer({ headers: { authorization: `Bearer ${'k'.repeat(65_536)}` } })).toBeUndefined();
  });
});
