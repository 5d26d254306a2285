import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  FuzzControls,
  fuzzOptions,
  fuzzParameters,
  hostileScenario,
  LeakWatch,
  runScenario,
} from '../../http/test/fuzz.js';
import { type FastifyTransport, startFastifyApp } from './fuzz-app.js';

/**
 * inject() is cheap, so it takes most runs; a scenario over a socket costs about twice as much (150 runs,
 * about 2 s) and reaches what inject() hands over pre-parsed: Node's own parsing of the request line and
 * fields (obs-text bytes, fields sent twice), Content-Length framing, and a raw refusal (`denials: 'raw'`,
 * written after `reply.hijack()`) going out on a real connection.
 */
const transports = [
  { transport: 'inject', runs: 400 },
  { transport: 'socket', runs: 150 },
] as const satisfies ReadonlyArray<{ transport: FastifyTransport; runs: number }>;

// Generators, the documented answers and how to run with random seeds: packages/http/test/fuzz.ts.
for (const { transport, runs } of transports)
  describe(`@floodgate/fastify under hostile requests (${transport})`, () => {
    const watch = new LeakWatch();
    beforeAll(() => watch.install());
    afterAll(() => watch.uninstall());

    it('answers only what the READMEs document: no 5xx but load shedding, no hang, no unhandled rejection, replays true to their original', async () => {
      await fc.assert(
        fc.asyncProperty(hostileScenario, async (scenario) => {
          await watch.around(async () => {
            const controls = new FuzzControls();
            const app = await startFastifyApp(fuzzOptions(controls, scenario.variant), controls, transport);
            try {
              await runScenario(app.client, controls, scenario);
            } finally {
              controls.close();
              await app.close();
            }
          });
        }),
        fuzzParameters(runs),
      );
    }, 60_000);
  });
