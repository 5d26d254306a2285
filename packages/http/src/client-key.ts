import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import {
  type ConnectionOf,
  openWithoutAddress,
  UNKNOWN_ADDRESS_KEY,
  UnknownAddressWarning,
} from './client-key-unknown.js';
import { trimOws } from './field-value.js';
import { checkInteger, checkObject, fail, rejectUnknownKeys } from './validate.js';

/** The request fields the built-in key generators read; Express and Fastify requests both have them. */
export interface KeyableRequest extends ConnectionOf {
  /** The client address as the framework reports it, honouring its trust-proxy setting. */
  readonly ip?: string | undefined;
  /** Request headers, lower-case names (Node's `IncomingHttpHeaders`); a repeated header is an array. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/**
 * Returns the bucket key of a request, or `undefined` to fall back to the client address. A number (a user
 * id, as @fastify/rate-limit's `keyGenerator` may answer) keys the bucket of its decimal string.
 */
export type KeyGenerator<Req> = (
  request: Req,
) => string | number | undefined | Promise<string | number | undefined>;

/**
 * The rate-limit key of a client address: IPv4 as is, IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as the IPv4
 * address, other IPv6 addresses reduced to their `/ipv6Subnet` prefix, because one host usually owns a
 * whole /64 or /56 and could otherwise rotate addresses to get a fresh bucket per request.
 *
 * @param address The address as the framework gives it (`req.ip`), with its trust-proxy setting applied.
 * @param ipv6Subnet Prefix length IPv6 addresses are grouped by, or `false` to keep them whole.
 * @default ipv6Subnet 56 (what express-rate-limit uses; a typical residential delegation)
 * @example
 * addressKey('2001:db8:1234:5678::1')      // '2001:db8:1234:5600::/56'
 * addressKey('::ffff:203.0.113.9')          // '203.0.113.9'
 */
export function addressKey(address: string | undefined, ipv6Subnet: number | false = 56): string {
  return address === undefined ? UNKNOWN_ADDRESS_KEY : presentAddressKey(address, ipv6Subnet);
}

/**
 * {@link addressKey} of an address the caller has already told from `undefined`: the rate limit makes
 * that test itself, to learn of a missing address without testing twice per request.
 * @internal
 */
export function presentAddressKey(address: string, ipv6Subnet: number | false): string {
  // An empty address is no misconfiguration to warn of: with trust proxy on it is an empty
  // X-Forwarded-For entry the client (or a proxy) wrote.
  if (address === '') return UNKNOWN_ADDRESS_KEY;
  // IPv4 is by far the common case: no parsing at all.
  if (!address.includes(':')) return address;
  let text = address;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  if (!isIPv6(text)) return address;
  const groups = parseIPv6(text);
  // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket: key it like the IPv4 address.
  if (
    groups[0] === 0 &&
    groups[1] === 0 &&
    groups[2] === 0 &&
    groups[3] === 0 &&
    groups[4] === 0 &&
    groups[5] === 0xffff
  ) {
    const hi = groups[6] ?? 0;
    const lo = groups[7] ?? 0;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  const prefix = ipv6Subnet === false ? 128 : ipv6Subnet;
  for (let i = 0; i < 8; i += 1) {
    const bitsLeft = prefix - i * 16;
    if (bitsLeft <= 0) groups[i] = 0;
    else if (bitsLeft < 16) groups[i] = (groups[i] ?? 0) & ((0xffff << (16 - bitsLeft)) & 0xffff);
  }
  const formatted = formatIPv6(groups);
  return prefix === 128 ? formatted : `${formatted}/${prefix}`;
}

/**
 * The longest bucket key a store is given as it is. A memory store is bounded by its number of keys
 * (`maxKeys`), not their size: a 15 KB key (a garbage `X-Forwarded-For` entry taken as `req.ip` with trust
 * proxy on, a long id) held 100 000 times would be 1.5 GB. Longer keys are hashed (see {@link boundedKey}).
 */
export const MAX_KEY_LENGTH = 256;

/**
 * `key` itself when it has at most {@link MAX_KEY_LENGTH} characters, else `long:` and 22 characters of
 * its SHA-256 (base64url, 132 bits): still one bucket per key, of a bounded size. Only long keys pay.
 */
export function boundedKey(key: string): string {
  if (key.length <= MAX_KEY_LENGTH) return key;
  return `long:${createHash('sha256').update(key).digest('base64url').slice(0, 22)}`;
}

/** Parses a valid IPv6 address (checked by the caller) into 8 16-bit groups. */
function parseIPv6(text: string): number[] {
  let body = text;
  const tail: number[] = [];
  // An embedded IPv4 in the last 32 bits (::ffff:1.2.3.4, 64:ff9b::1.2.3.4).
  if (body.includes('.')) {
    const at = body.lastIndexOf(':');
    const parts = body
      .slice(at + 1)
      .split('.')
      .map(Number);
    tail.push(((parts[0] ?? 0) << 8) | (parts[1] ?? 0), ((parts[2] ?? 0) << 8) | (parts[3] ?? 0));
    body = body.slice(0, at + 1);
    if (!body.endsWith('::')) body = body.slice(0, -1);
  }
  const [head = '', rest] = body.split('::');
  const headGroups = head === '' ? [] : head.split(':').map((g) => Number.parseInt(g, 16));
  const restGroups =
    rest === undefined || rest === '' ? [] : rest.split(':').map((g) => Number.parseInt(g, 16));
  const fill = 8 - headGroups.length - restGroups.length - tail.length;
  return [...headGroups, ...new Array<number>(Math.max(0, fill)).fill(0), ...restGroups, ...tail];
}

/** RFC 5952 text form: lower case, longest run (>= 2) of zero groups compressed to `::`. */
function formatIPv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLength < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** Options of {@link byAddress}. */
export interface ByAddressOptions {
  /**
   * Prefix length IPv6 clients are grouped by, or `false` to key every IPv6 address on its own.
   * @default 56
   */
  readonly ipv6Subnet?: number | false;
}

function checkSubnet(value: unknown): number | false {
  if (value === false) return false;
  return checkInteger('ipv6Subnet', value, 1, 128);
}

/**
 * Key generator: the client address as the framework sees it (Express `req.ip` with `trust proxy`,
 * Fastify `request.ip` with `trustProxy`), IPv6 grouped by prefix. The default of every rate limit. A
 * request without an address on an open connection (a Unix socket, an untrusted proxy) is keyed `unknown`,
 * one bucket for all such clients, and the first one is reported once per generator as a process warning
 * (`ClientAddressUnknownError`, `ERR_CLIENT_ADDRESS_UNKNOWN`).
 *
 * @throws {InvalidOptionError} when `ipv6Subnet` is not an integer 1..128 or `false`.
 * @example
 * rateLimit({ limit: 100, windowMs: 60_000, key: byAddress({ ipv6Subnet: 64 }) })
 */
export function byAddress(options: ByAddressOptions = {}): (request: KeyableRequest) => string {
  checkObject('options', options);
  rejectUnknownKeys(options, ['ipv6Subnet'], 'byAddress()');
  const subnet = options.ipv6Subnet === undefined ? 56 : checkSubnet(options.ipv6Subnet);
  const unknownAddress = new UnknownAddressWarning('rate-limit');
  return function addressKeyOf(request) {
    const address = request.ip;
    if (address !== undefined) return presentAddressKey(address, subnet);
    if (openWithoutAddress(request)) unknownAddress.warn();
    return UNKNOWN_ADDRESS_KEY;
  };
}

/**
 * Key generator: the authenticated user. Anonymous requests (`getUserId` answers `undefined`) fall back to
 * the client address, as do `null` and `''`. Keys are prefixed `user:` so a user id can never collide with
 * an address.
 *
 * @throws {InvalidOptionError} when `getUserId` is not a function.
 * @example
 * rateLimit({ name: 'per-user', limit: 20, windowMs: 60_000, key: byUser((req) => req.user?.id) })
 */
export function byUser<Req>(
  getUserId: (request: Req) => string | number | undefined | null,
): (request: Req) => string | undefined {
  if (typeof getUserId !== 'function') fail('getUserId', 'a function', getUserId);
  return function userKeyOf(request) {
    const id = getUserId(request);
    return id === undefined || id === null || id === '' ? undefined : `user:${id}`;
  };
}

// RFC 9110 §11.4 puts 1*SP between scheme and credentials; HTAB is taken too, as around the field.
const BEARER_SCHEME = /^bearer[ \t]+/i;

/** Options of {@link byApiKey}. */
export interface ByApiKeyOptions {
  /**
   * Request header carrying the API key. `authorization` reads a `Bearer` token.
   * @default 'x-api-key'
   */
  readonly header?: string;
}

/**
 * Key generator: an API key from a request header. The key is hashed (SHA-256, 16 bytes) so a secret
 * never sits in a store such as Redis; requests without one (or with one over 4096 characters, or without
 * the `Bearer` scheme on `authorization`) fall back to the client address. Only SP and
 * HTAB around the value are dropped (HTTP's whitespace): any other character, a no-break space included,
 * is part of the key.
 *
 * @throws {InvalidOptionError} when `header` is not a non-empty string.
 * @example
 * rateLimit({ limit: 1000, windowMs: 60_000, key: byApiKey({ header: 'authorization' }) })
 */
export function byApiKey(options: ByApiKeyOptions = {}): (request: KeyableRequest) => string | undefined {
  checkObject('options', options);
  rejectUnknownKeys(options, ['header'], 'byApiKey()');
  const header = options.header ?? 'x-api-key';
  if (typeof header !== 'string' || header === '') fail('header', 'a non-empty string', header);
  const name = header.toLowerCase();
  const bearer = name === 'authorization';
  return function apiKeyOf(request) {
    const raw = request.headers[name];
    if (typeof raw !== 'string') return undefined;
    // Only SP and HTAB surround a field value (RFC 9110 §5.5); `trim()` and `\s` would also take a
    // trailing U+00A0 (the byte 0xA0 as Node decodes it) and give `k<0xA0>` the bucket of `k`.
    let value = trimOws(raw);
    if (bearer) {
      const scheme = BEARER_SCHEME.exec(value);
      if (scheme === null) return undefined;
      value = value.slice(scheme[0].length);
    }
    if (value === '' || value.length > 4096) return undefined;
    return `key:${createHash('sha256').update(value).digest('base64url').slice(0, 22)}`;
  };
}
