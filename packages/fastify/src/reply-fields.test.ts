import Fastify, { type FastifyReply } from 'fastify';
import { describe, expect, it } from 'vitest';
import { ReplyFields } from './reply-fields.js';

const FIELDS = Symbol('fastify.reply.headers'); // one symbol for every reply, as in Fastify

describe('ReplyFields', () => {
  it('finds the object a real Fastify keeps reply.header() fields in, and writing it is what reply.header() does', async () => {
    const app = Fastify();
    const fields = new ReplyFields();
    app.get('/', (_request, reply) => {
      reply.header('x-earlier', 'yes');
      const pending = fields.of(reply);
      expect(pending).toMatchObject({ 'x-earlier': 'yes' });
      if (pending !== undefined) pending.ratelimit = '"p";r=1;t=1';
      reply.send('ok');
    });
    const response = await app.inject({ url: '/' });
    expect(response.headers.ratelimit).toBe('"p";r=1;t=1');
    expect(response.headers['x-earlier']).toBe('yes');
    await app.close();
  });

  it.each([
    ['has no such symbol', {}],
    ['keeps something else under it', { [FIELDS]: new Map() }],
  ])('answers undefined for a Fastify that %s, and looks only once', (_name, own) => {
    const fields = new ReplyFields();
    let searches = 0;
    for (let i = 0; i < 3; i += 1) {
      const reply = new Proxy(own, {
        ownKeys(target) {
          searches += 1;
          return Reflect.ownKeys(target);
        },
      }) as unknown as FastifyReply;
      expect(fields.of(reply)).toBeUndefined();
    }
    expect(searches).toBe(1);
  });

  it('gives each reply its own object', () => {
    const fields = new ReplyFields();
    const one = { [FIELDS]: {} } as unknown as FastifyReply;
    const two = { [FIELDS]: { a: '1' } } as unknown as FastifyReply;
    expect(fields.of(one)).toEqual({});
    expect(fields.of(two)).toEqual({ a: '1' });
  });
});
