import { FloodgateHttpError } from './errors.js';

/** The bucket key of every request without a client address (and {@link addressKey}'s answer for one). */
export const UNKNOWN_ADDRESS_KEY = 'unknown';

/** Which default met a request without a client address: the rate limit's key or the idempotency scope. */
export type AddressUser = 'rate-limit' | 'idempotency';

/**
 * The part of a request that tells whether its connection is still open: Node's `socket` (Express's
 * `req.socket`, Fastify's `request.socket`; over HTTP/2 a proxy whose `destroyed` is the stream's).
 */
export interface ConnectionOf {
  /** The request's connection; `destroyed` once the client has gone. */
  readonly socket?:
    | {
        /** True once the connection is closed: the client has gone (or the server ended it). */
        readonly destroyed?: boolean;
      }
    | null
    | undefined;
}

/**
 * Whether a request without an address came on a connection known to be open: then the server cannot see
 * its clients (a Unix socket, a proxy it does not trust). A destroyed socket has merely forgotten its peer
 * (Node drops it with the handle), which is no misconfiguration; a request with no socket at all (a
 * hand-made one) tells nothing, and nothing is claimed about it.
 */
export function openWithoutAddress(request: ConnectionOf): boolean {
  return request.socket?.destroyed === false;
}

const FIX =
  'Behind a proxy, let the framework read the client from X-Forwarded-For: in Express ' +
  "`app.set('trust proxy', 1)` (a hop count, or `true`; on a Unix socket the proxy has no address, so an " +
  "address list such as 'loopback' trusts nothing), in Fastify `trustProxy: true` or " +
  '`(address, hop) => hop === 0` (its hop count and address lists trust nothing on a Unix socket)';

const MESSAGES: Readonly<Record<AddressUser, string>> = {
  'rate-limit':
    'A request reached the rate limit without a client address (`req.ip` is undefined) on an open ' +
    'connection: the server listens on a Unix socket, or behind a proxy it does not trust. Every such ' +
    'request counts against one bucket (key `unknown`), so one client can use up the quota of all. ' +
    `${FIX}; or give the limit a \`key\` that tells clients apart (\`byUser\`, \`byApiKey\`). ` +
    'Warned once per limiter.',
  idempotency:
    'A request with an Idempotency-Key reached the idempotency middleware without a client address ' +
    '(`req.ip` is undefined) and without an `Authorization` header, on an open connection: the server ' +
    'listens on a Unix socket, or behind a proxy it does not trust. Its default scope cannot keep its key ' +
    "apart from other clients' (one client would be replayed another's stored answer), so it was " +
    `answered 500 ERR_CLIENT_ADDRESS_UNKNOWN and not processed. ${FIX}; or pass a \`scope\` that names ` +
    'the user or tenant of every request. Warned once per middleware.',
};

/**
 * The server cannot see the address of its clients: a request reached the default rate-limit key or the
 * default idempotency scope on an open connection with `req.ip` (`request.ip`) undefined. Never thrown:
 * each middleware or plugin instance reports it once through `process.emitWarning` (printed to stderr,
 * heard by `process.on('warning')`) the first time it happens, since a wrong setting is wrong for every
 * request after it. The message says what to set. A client that has already gone is not reported.
 *
 * @example
 * process.on('warning', (warning) => {
 *   if (warning instanceof ClientAddressUnknownError) logger.error(warning.message); // or by its `code`
 * });
 */
export class ClientAddressUnknownError extends FloodgateHttpError {
  declare readonly code: 'ERR_CLIENT_ADDRESS_UNKNOWN';
  /** Whose default met the request: `'rate-limit'` (its key) or `'idempotency'` (its scope). */
  readonly feature: AddressUser;

  constructor(feature: AddressUser) {
    super(MESSAGES[feature], 'ERR_CLIENT_ADDRESS_UNKNOWN');
    this.feature = feature;
  }
}

/**
 * One {@link ClientAddressUnknownError} warning per instance that holds it (a limiter and the variants
 * derived from it, an idempotency middleware): state lives in instances, never in the module.
 */
export class UnknownAddressWarning {
  readonly #feature: AddressUser;
  #warned = false;

  constructor(feature: AddressUser) {
    this.#feature = feature;
  }

  /** Emits the warning unless this instance did already. */
  warn(): void {
    if (this.#warned) return;
    this.#warned = true;
    process.emitWarning(new ClientAddressUnknownError(this.#feature));
  }
}
