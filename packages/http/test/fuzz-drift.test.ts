/**
 * Express and Fastify must answer the same requests alike: both run this package's core, and the README
 * says they cannot drift. Same generated scenario, a fresh app on each framework, answers compared
 * request for request. Only portable requests (fuzz.ts `portableRequest`). What the frameworks do
 * differently by design is left out, each with its reason where it is generated, and the per-adapter fuzz
 * tests still send it: routing (Express matches case-insensitively and ignores a trailing slash, Fastify
 * decodes the path first; Express answers OPTIONS), body parsing (Express's parser is strict and reads an
 * empty body as `{}`, Fastify's takes any JSON value but refuses `__proto__`/`constructor` keys, and its
 * 404 handler parses a body before answering), and, with trust proxy, whitespace other than SP in
 * X-Forwarded-For (their proxy-addr parsers trim differently, so the client address differs).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningApp, startExpressApp } from '../../express/test/fuzz-app.js';
import { startFastifyApp } from '../../fastify/test/fuzz-app.js';
import {
  FuzzControls,
  type FuzzOptions,
  fuzzOptions,
  fuzzParameters,
  LeakWatch,
  type Observation,
  portableScenario,
  runScenario,
  type Scenario,
} from './fuzz.js';

/** What must not drift: status and problem code, replayed or not, the RateLimit fields, a handler's body. */
function summary(observation: Observation): string {
  const { label, replayed, response } = observation;
  const body = label === '201' || label === '402' ? ` ${response.body}` : '';
  return `${label}${replayed ? ' replayed' : ''} ratelimit=${response.headers.ratelimit}${body}`;
}

type Start = (options: FuzzOptions, controls: FuzzControls) => Promise<RunningApp>;

async function answers(start: Start, scenario: Scenario): Promise<string[]> {
  const controls = new FuzzControls();
  const app = await start(fuzzOptions(controls, scenario.variant), controls);
  try {
    return (await runScenario(app.client, controls, scenario)).map(summary);
  } finally {
    controls.close();
    await app.close();
  }
}

describe('Express and Fastify under the same hostile requests', () => {
  const watch = new LeakWatch();
  beforeAll(() => watch.install());
  afterAll(() => watch.uninstall());

  it('answer every portable request alike (status, problem code, replay, RateLimit fields)', async () => {
    await fc.assert(
      fc.asyncProperty(portableScenario, async (scenario) => {
        await watch.around(async () => {
          const express = await answers(startExpressApp, scenario);
          const fastify = await answers(startFastifyApp, scenario);
          expect(fastify).toEqual(express);
        });
      }),
      fuzzParameters(200),
    );
  }, 60_000);
});
