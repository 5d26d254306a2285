import { describe, expect, it } from 'vitest';
import { type FestivalOptions, plannedRuns } from './run-festival.js';

const options: FestivalOptions = {
  students: 10,
  arrivalMs: 100,
  bankRate: 50,
  faults: false,
  seed: 1,
  shops: ['naive', 'careful', 'floodgate'],
  crash: true,
  instances: 1,
  redisUrl: undefined,
  drainTimeoutMs: 1000,
  outDir: 'unused',
};

const planned = (extra: Partial<FestivalOptions>) =>
  plannedRuns({ ...options, ...extra }).map(({ label, shop, framework }) => ({ label, shop, framework }));

describe('plannedRuns', () => {
  it('runs every shop on Express by default, under the labels it always had', () => {
    expect(planned({})).toEqual([
      { label: 'naive', shop: 'naive', framework: 'express' },
      { label: 'careful', shop: 'careful', framework: 'express' },
      { label: 'floodgate', shop: 'floodgate', framework: 'express' },
      { label: 'floodgate + SIGKILL', shop: 'floodgate', framework: 'express' },
    ]);
  });

  it('runs the floodgate shop on Fastify when asked, and says so in its label; the others stay Express', () => {
    expect(planned({ framework: 'fastify' })).toEqual([
      { label: 'naive', shop: 'naive', framework: 'express' },
      { label: 'careful', shop: 'careful', framework: 'express' },
      { label: 'floodgate (fastify)', shop: 'floodgate', framework: 'fastify' },
      { label: 'floodgate (fastify) + SIGKILL', shop: 'floodgate', framework: 'fastify' },
    ]);
    expect(planned({ framework: 'fastify', shops: ['floodgate'], crash: false, instances: 2 })).toEqual([
      { label: 'floodgate (fastify) ×2', shop: 'floodgate', framework: 'fastify' },
    ]);
  });
});
