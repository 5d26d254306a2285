import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';

/** The largest request body the shop reads; a larger one is answered 413. */
export const JSON_BODY_LIMIT = '16kb';

/** body-parser's JSON reader, as `express.json()` makes it. */
export type JsonBodyParser = ReturnType<typeof express.json>;

/**
 * How both shops read a request body: body-parser (what `express.json()` is) with a 16 KB limit. The
 * Fastify shop reads with it too, instead of Fastify's own parser, so the two agree on every body: strict
 * JSON (an object or array; empty is `{}`), any other media type left unread (`undefined`, which the
 * checkout answers 400), 400 for malformed JSON, 413 past the limit, 415 for a charset other than UTF-*
 * or an unknown `Content-Encoding` (gzip, deflate and br are inflated). Its errors carry `status`.
 */
export function jsonBodyParser(): JsonBodyParser {
  return express.json({ limit: JSON_BODY_LIMIT });
}

/**
 * Reads `request`'s body with `parser` outside Express (the Fastify shop's content-type parser).
 * @throws body-parser's error (`status` 400, 413 or 415), as a rejection.
 */
export function readJsonBody(parser: JsonBodyParser, request: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // body-parser hands the response only to a `verify` option, which this parser has none of.
    parser(request, undefined as unknown as ServerResponse, (error?: unknown) => {
      if (error) reject(error);
      else resolve((request as IncomingMessage & { body?: unknown }).body);
    });
  });
}
