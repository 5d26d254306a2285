import Fastify from 'fastify';
import { describe, expectTypeOf, it } from 'vitest';
import type { FloodgateRouteConfig, RateLimitResult } from './index.js';
import './index.js';

describe('fastify type augmentation', () => {
  it('types config.floodgate and request.floodgateRateLimit', () => {
    const app = Fastify();
    app.get(
      '/',
      {
        config: {
          floodgate: { rateLimit: { cost: 2 }, idempotency: true, loadShedding: { priority: 'low' } },
        },
      },
      async (request) => {
        expectTypeOf(request.floodgateRateLimit).toEqualTypeOf<RateLimitResult | null>();
        return 'ok';
      },
    );
    // @ts-expect-error cost must be a number or a function
    app.get('/bad', { config: { floodgate: { rateLimit: { cost: 'two' } } } }, async () => 'ok');
    expectTypeOf<FloodgateRouteConfig['rateLimit']>().toEqualTypeOf<
      | false
      | Partial<import('@floodgate/http').RateLimitOptions<import('fastify').FastifyRequest>>
      | undefined
    >();
  });
});
