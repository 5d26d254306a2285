import type { HttpAnswer } from '@floodgate/http';
import type { FastifyReply } from 'fastify';
import { describe, expect, it } from 'vitest';
import { RefusalSender } from './send-refusal.js';

interface Written {
  status: number;
  fields: Array<string | number>;
  body: unknown;
}

/**
 * A reply as far as the raw path touches it. `own` is what Fastify keeps under its own symbol (the fields
 * set with `reply.header()`); `symbol: false` stands for a Fastify without that symbol, `'map'` for one
 * that keeps something else under it.
 */
const FIELDS = Symbol('fastify.reply.headers'); // one symbol for every reply, as in Fastify

function fakeReply(own: Record<string, string>, symbol: boolean | 'map' = true) {
  const written: Written[] = [];
  let pending: Omit<Written, 'body'> | undefined;
  const raw = {
    headersSent: false,
    writeHead(status: number, fields: Array<string | number>) {
      pending = { status, fields };
    },
    end(body: unknown) {
      written.push({ ...(pending as Omit<Written, 'body'>), body });
    },
  };
  const reply: Record<string | symbol, unknown> = {
    raw,
    hijack() {},
    getHeaders: () => ({ 'x-from-get-headers': 'yes', ...own }),
  };
  if (symbol !== false) {
    reply[FIELDS] = symbol === 'map' ? new Map(Object.entries(own)) : own;
  }
  return { reply: reply as unknown as FastifyReply, written };
}

const answer: HttpAnswer = Object.freeze({
  status: 429,
  headers: Object.freeze({ 'content-type': 'application/problem+json', 'retry-after': '60' }),
  body: '{"status":429}',
});
const first = Object.freeze([Object.freeze(['retry-after', '59'] as const)]);

describe('RefusalSender (raw)', () => {
  it('writes the fields in the order they win, content-length last, and the body', () => {
    const { reply, written } = fakeReply({});
    new RefusalSender('raw').send(reply, answer, first);
    expect(written).toEqual([
      {
        status: 429,
        fields: ['retry-after', '59', 'content-type', 'application/problem+json', 'content-length', '14'],
        body: '{"status":429}',
      },
    ]);
  });

  it('builds the field list once while the same answer and fields come back', () => {
    const sender = new RefusalSender('raw');
    const one = fakeReply({});
    const two = fakeReply({});
    sender.send(one.reply, answer, first);
    sender.send(two.reply, answer, first);
    expect(two.written[0]?.fields).toBe(one.written[0]?.fields);
    const other: HttpAnswer = { ...answer, body: '{"status":429,"retryAfter":2}' };
    const three = fakeReply({});
    sender.send(three.reply, other, first);
    expect(three.written[0]?.fields).not.toBe(one.written[0]?.fields);
    expect(three.written[0]?.fields.at(-1)).toBe('29');
  });

  it('adds fields set with reply.header() on a copy, so the next refusal does not inherit them', () => {
    const sender = new RefusalSender('raw');
    const cors = fakeReply({ 'access-control-allow-origin': '*', 'retry-after': '1' });
    sender.send(cors.reply, answer, first);
    const fields = cors.written[0]?.fields ?? [];
    expect(fields.slice(-2)).toEqual(['access-control-allow-origin', '*']);
    // The refusal's own Retry-After wins over the one set earlier.
    expect(fields.filter((f) => f === 'retry-after')).toHaveLength(1);
    const plain = fakeReply({});
    sender.send(plain.reply, answer, first);
    expect(plain.written[0]?.fields).not.toContain('access-control-allow-origin');
  });

  it.each([
    ['has no such symbol', false],
    ['keeps something else under it', 'map'],
  ] as const)('uses reply.getHeaders() with a Fastify that %s', (_name, symbol) => {
    const { reply, written } = fakeReply({ 'access-control-allow-origin': '*' }, symbol);
    new RefusalSender('raw').send(reply, answer, first);
    expect(written[0]?.fields).toContain('x-from-get-headers');
    expect(written[0]?.fields).toContain('access-control-allow-origin');
  });

  it("looks for Fastify's field object once per sender, also when this Fastify has none", () => {
    const sender = new RefusalSender('raw');
    const symbolReads: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const { reply } = fakeReply({}, false);
      const spy = new Proxy(reply as object, {
        ownKeys(target) {
          symbolReads.push(i);
          return Reflect.ownKeys(target);
        },
      }) as FastifyReply;
      sender.send(spy, answer, first);
    }
    expect(symbolReads).toEqual([0]);
  });

  it('a field Node will not write: the refusal goes out with its own fields, else the response is destroyed', () => {
    for (const failures of [1, 2]) {
      const calls: Array<Array<string | number>> = [];
      let destroyed: unknown;
      let ended: unknown;
      const raw = {
        headersSent: false,
        getHeaderNames: () => [],
        removeHeader() {},
        writeHead(_status: number, fields: Array<string | number>) {
          calls.push(fields);
          if (calls.length <= failures) throw new TypeError('Invalid character in header content');
        },
        end(body: unknown) {
          ended = body;
        },
        destroy(error: unknown) {
          destroyed = error;
        },
      };
      const reply = {
        raw,
        hijack() {},
        getHeaders: () => ({ 'x-trace': 'a\u0001b' }),
      } as unknown as FastifyReply;
      new RefusalSender('raw').send(reply, answer, first);
      expect(calls[0]).toContain('x-trace');
      expect(calls[1]).not.toContain('x-trace');
      if (failures === 1) {
        expect(ended).toBe(answer.body);
        expect(destroyed).toBeUndefined();
      } else {
        expect(ended).toBeUndefined();
        expect(destroyed).toBeInstanceOf(TypeError);
      }
    }
  });

  it('the retry after a failed writeHead drops what that write left on the response (HTTP/2 keeps the whole list)', () => {
    // As Node's HTTP/2 compatibility response does: the fields given to writeHead are merged into its own
    // before they are checked, and a connection-specific one makes every later writeHead throw too.
    const fields = new Map<string, unknown>([['x-set-on-raw', 'yes']]);
    let sent: { status: number; fields: string[]; body: unknown } | undefined;
    let destroyed: unknown;
    const raw = {
      headersSent: false,
      getHeaderNames: () => [...fields.keys()],
      removeHeader: (name: string) => fields.delete(name),
      writeHead(status: number, list: string[]) {
        for (let i = 0; i < list.length; i += 2) fields.set(list[i] as string, list[i + 1]);
        if (fields.has('keep-alive')) throw new TypeError('HTTP/1 Connection specific headers are forbidden');
        sent = { status, fields: [...fields.keys()], body: undefined };
      },
      end(body: unknown) {
        if (sent !== undefined) sent.body = body;
      },
      destroy(error: unknown) {
        destroyed = error;
      },
    };
    const reply = {
      raw,
      hijack() {},
      getHeaders: () => ({ 'keep-alive': 'timeout=5', 'access-control-allow-origin': '*' }),
    } as unknown as FastifyReply;
    new RefusalSender('raw').send(reply, answer, first);
    expect(destroyed).toBeUndefined();
    expect(sent).toEqual({
      status: 429,
      fields: ['retry-after', 'content-type', 'content-length'],
      body: answer.body,
    });
  });
});
