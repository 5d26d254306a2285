import type { ServerResponse } from 'node:http';
import {
  defaultIdempotencyScope,
  IDEMPOTENCY_OPTION_NAMES,
  Idempotency,
  type IdempotencyOptions,
  type IdempotencyTicket,
  InvalidOptionError,
} from '@floodgate/http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { sendAnswer } from './send.js';

/** Options of {@link idempotency}. */
export interface ExpressIdempotencyOptions extends IdempotencyOptions {
  /**
   * Who a key belongs to: one scope's key never replays another scope's response. Return the
   * authenticated user or tenant id.
   * @default a hash of the `Authorization` header when there is one, else `req.ip`
   */
  readonly scope?: (req: Request) => string | number | undefined | Promise<string | number | undefined>;
}

/** The idempotency middleware, with its core for inspection and clean-up. */
export interface IdempotencyMiddleware extends RequestHandler {
  readonly core: Idempotency;
  /** Closes the store when the middleware created it (the default memory store). */
  close(): Promise<void>;
}

type Chunk = string | Uint8Array;

/**
 * Records what the handler sends, without changing it, and hands it to the ticket when the handler
 * ends the response - also when the client has gone away meanwhile: the outcome is decided all the same.
 */
function capture(res: ServerResponse, ticket: IdempotencyTicket, maxBytes: number): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  const keep = (chunk: unknown, encoding: unknown) => {
    if (tooLarge || chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const buffer =
      typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : Buffer.from(chunk as Uint8Array);
    size += buffer.byteLength;
    if (size > maxBytes) {
      tooLarge = true;
      chunks.length = 0;
    } else {
      chunks.push(buffer);
    }
  };
  const write = res.write;
  const end = res.end;
  res.write = function floodgateWrite(this: ServerResponse, chunk: Chunk, ...rest: unknown[]) {
    keep(chunk, rest[0]);
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  res.end = function floodgateEnd(this: ServerResponse, ...args: unknown[]) {
    keep(args[0], args[1]);
    res.write = write;
    res.end = end;
    const body = tooLarge ? undefined : Buffer.concat(chunks);
    if (tooLarge) void ticket.abandon();
    else {
      void ticket.finish({
        status: res.statusCode,
        headers: res.getHeaders() as Record<string, string | number | string[] | undefined>,
        body,
      });
    }
    return (end as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['end'];
}

const KNOWN = [...IDEMPOTENCY_OPTION_NAMES, 'scope'];

/**
 * Express middleware for idempotent endpoints (draft-ietf-httpapi-idempotency-key-header): the first
 * request with an `Idempotency-Key` runs and its answer is stored; a retry with the same payload is
 * replayed with `Idempotent-Replayed: true`; another payload gets 422; a duplicate in flight gets 409 +
 * `Retry-After`, or waits for the first answer with `inFlight: 'coalesce'`. Mount it after a body parser
 * (`express.json()`): the fingerprint covers the parsed body.
 *
 * @throws {InvalidOptionError} at set-up on an unknown or invalid option.
 * @example
 * app.post('/checkout', express.json(), idempotency({ scope: (req) => req.user.id }), checkout);
 */
export function idempotency(options: ExpressIdempotencyOptions = {}): IdempotencyMiddleware {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('options', 'Expected `options` to be an object');
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN.includes(name)) {
      throw new InvalidOptionError(
        name,
        `Unknown option \`${name}\` for idempotency(); expected one of ${KNOWN.join(', ')}`,
      );
    }
  }
  const { scope, ...coreOptions } = options;
  if (scope !== undefined && typeof scope !== 'function') {
    throw new InvalidOptionError('scope', `Expected \`scope\` to be a function, got ${typeof scope}`);
  }
  const core = new Idempotency(coreOptions);
  const maxBytes = options.maxBodyBytes ?? 1_048_576;
  const scopeOf = scope ?? defaultIdempotencyScope;

  async function handle(req: Request, res: Response, next: NextFunction): Promise<void> {
    const scoped = await scopeOf(req);
    const start = await core.startWhileConnected(
      {
        method: req.method,
        url: req.originalUrl,
        keyHeader: req.headers[core.header],
        body: req.body,
        scope: scoped === undefined ? '' : String(scoped),
      },
      res,
    );
    if (start.kind === 'answer') {
      if (!res.destroyed) sendAnswer(res, start.answer);
      return;
    }
    if (start.kind === 'proceed') capture(res, start.ticket, maxBytes);
    next();
  }

  const middleware = function floodgateIdempotency(req: Request, res: Response, next: NextFunction): void {
    if (!core.appliesTo(req.method)) {
      next();
      return;
    }
    handle(req, res, next).catch(next);
  };
  return Object.assign(middleware, { core, close: () => core.close() });
}
