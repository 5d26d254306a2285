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
import { startFastifyApp } from './fuzz-app.js';

// Generators, the documented answers and how to run with random seeds: packages/http/test/fuzz.ts.
describe('@floodgate/fastify under hostile requests (inject)', () => {
  const watch = new LeakWatch();
  beforeAll(() => watch.install());
  afterAll(() => watch.uninstall());

  it('answers only what the READMEs document: no 5xx but load shedding, no hang, no unhandled rejection, replays true to their original', async () => {
    await fc.assert(
      fc.asyncProperty(hostileScenario, async (scenario) => {
        await watch.around(async () => {
          const controls = new FuzzControls();
          const app = await startFastifyApp(fuzzOptions(controls, scenario.variant), controls);
          try {
            await runScenario(app.client, controls, scenario);
          } finally {
            controls.close();
            await app.close();
          }
        });
      }),
      fuzzParameters(400),
    );
  }, 60_000);
});
