import { describe, expectTypeOf, it } from 'vitest';
import type { KeyableRequest } from './client-key.js';
import type { HttpAnswer } from './problem.js';
import type { RateLimit, RateLimitResult } from './rate-limit.js';

describe('RateLimitResult', () => {
  it('is told apart by action: a refusal always has its answer, an allowed request its cost', () => {
    const handle = (result: RateLimitResult) => {
      if (result.action === 'deny') {
        expectTypeOf(result.answer).toEqualTypeOf<HttpAnswer>();
      } else if (result.action === 'allow') {
        expectTypeOf(result.cost).toEqualTypeOf<number>();
        expectTypeOf(result.answer).toEqualTypeOf<undefined>();
      } else {
        expectTypeOf(result.action).toEqualTypeOf<'skip'>();
      }
    };
    expectTypeOf(handle).parameter(0).toEqualTypeOf<RateLimitResult>();
  });

  it('check answers a result or a promise of one', () => {
    expectTypeOf<ReturnType<RateLimit<KeyableRequest>['check']>>().toEqualTypeOf<
      RateLimitResult | Promise<RateLimitResult>
    >();
  });
});
