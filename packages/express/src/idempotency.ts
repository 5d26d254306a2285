import type { ServerResponse } from 'node:http';
import {
  defaultIdempotencyScope,
  IDEMPOTENCY_OPTION_NAMES,
  Idempotency,
  type IdempotencyOptions,
  type IdempotencyTicket,
  InvalidOptionError,
  invalidOption,
  resolveIdempotencyScope,
} from '@floodgate/http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { sendAnswer } from './send.js';

/** Options of {@link idempotency}. */
export interface ExpressIdempotencyOptions extends IdempotencyOptions {
  /**
   * Who a key belongs to: one scope's key never replays another scope's response. Return the
   * authenticated user or tenant id. `undefined`, `null` or `''` (no user known) fall back to the
   * default, so anonymous clients never share one scope.
   * @default a hash of the `Authorization` header when there is one, else `req.ip`
   */
  readonly scope?: (
    req: Request,
  ) => string | number | undefined | null | Promise<string | number | undefined | null>;
}

/** The idempotency middleware, with its core for inspection and clean-up. */
export interface IdempotencyMiddleware extends RequestHandler {
  /** The framework-agnostic state machine the middleware drives (its `store`, `header`...). */
  readonly core: Idempotency;
  /** Closes the store when the middleware created it (the default memory store). */
  close(): Promise<void>;
}

type Chunk = string | Uint8Array;

type Fields = Record<string, string | number | string[] | undefined>;

/**
 * The fields a handler gave `res.writeHead(status, [reason], fields)`: Node sends them without putting
 * them where `res.getHeaders()` looks when no field was set before. An object, or a flat
 * `[name, value, name, value, ...]` list.
 */
function writeHeadFields(args: readonly unknown[]): Fields | undefined {
  const given = typeof args[1] === 'string' ? args[2] : args[1];
  if (typeof given !== 'object' || given === null) return undefined;
  const fields: Fields = {};
  const add = (name: unknown, value: unknown) => {
    if (typeof name !== 'string' || value === undefined) return;
    const lower = name.toLowerCase();
    const before = fields[lower];
    const next = Array.isArray(value) ? value.map(String) : String(value);
    fields[lower] = before === undefined ? next : ([] as string[]).concat(before as string, next);
  };
  if (Array.isArray(given)) for (let i = 0; i + 1 < given.length; i += 2) add(given[i], given[i + 1]);
  else for (const name of Object.keys(given)) add(name, (given as Record<string, unknown>)[name]);
  return fields;
}

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
  const writeHead = res.writeHead;
  let written: Fields | undefined;
  let ended = false;
  const floodgateWriteHead = function floodgateWriteHead(this: ServerResponse, ...args: unknown[]) {
    if (!ended) {
      const fields = writeHeadFields(args);
      if (fields !== undefined) written = { ...written, ...fields };
    }
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['writeHead'];
  res.writeHead = floodgateWriteHead;
  res.write = function floodgateWrite(this: ServerResponse, chunk: Chunk, ...rest: unknown[]) {
    keep(chunk, rest[0]);
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  res.end = function floodgateEnd(this: ServerResponse, ...args: unknown[]) {
    keep(args[0], args[1]);
    ended = true;
    res.write = write;
    res.end = end;
    // `end` sends the header through `this.writeHead`: a wrapper mounted after ours (on-headers, used by
    // response-time and express-session to set fields at that moment) must stay, so ours is only taken
    // out if it is still the outermost one; otherwise it passes calls through.
    if (res.writeHead === floodgateWriteHead) res.writeHead = writeHead;
    const body = tooLarge ? undefined : Buffer.concat(chunks);
    if (tooLarge) void ticket.abandon();
    else {
      // Fields given to writeHead win over those set before, as they do on the wire.
      const headers = res.getHeaders() as Fields;
      void ticket.finish({
        status: res.statusCode,
        headers: written === undefined ? headers : { ...headers, ...written },
        body,
      });
    }
    return (end as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['end'];
}

const KNOWN = [...IDEMPOTENCY_OPTION_NAMES, 'scope'];

/**
 * Whether the request carries a body nothing has read: no body parser for its content type ran before the
 * middleware (Express 5 leaves `req.body` undefined, Express 4's parsers set `{}`), so every payload would
 * have the same fingerprint. A parser that read it has ended the stream.
 */
function bodyUnread(req: Request): boolean {
  if (req.readableEnded) return false;
  const { headers } = req;
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && Number(length) > 0;
}

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
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalidOption('options', 'an object', options);
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
  if (scope !== undefined && typeof scope !== 'function') throw invalidOption('scope', 'a function', scope);
  const core = new Idempotency(coreOptions);
  const maxBytes = options.maxBodyBytes ?? 1_048_576;

  async function handle(req: Request, res: Response, next: NextFunction): Promise<void> {
    const scoped =
      scope === undefined ? defaultIdempotencyScope(req) : resolveIdempotencyScope(await scope(req), req);
    const start = await core.startWhileConnected(
      {
        method: req.method,
        url: req.originalUrl,
        keyHeader: req.headers[core.header],
        body: req.body,
        bodyUnread: bodyUnread(req),
        scope: scoped,
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
