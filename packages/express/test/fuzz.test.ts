import express5 from 'express';
// Express 4 (the peer range allows it), installed under an alias (types: ./express4.d.ts).
import express4 from 'express4';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  type BodyParser,
  FuzzControls,
  fuzzOptions,
  fuzzParameters,
  hostileScenario,
  LeakWatch,
  runScenario,
} from '../../http/test/fuzz.js';
import { startExpressApp } from './fuzz-app.js';

/** Express 4's body-parser 1.x reads a request without a body as `{}`: the same payload as `{}`. */
const versions = [
  { name: 'Express 5', express: express5, parser: 'standard', runs: 300 },
  { name: 'Express 4', express: express4, parser: 'bodyless-is-empty-object', runs: 150 },
] as const satisfies ReadonlyArray<{
  name: string;
  express: typeof express5;
  parser: BodyParser;
  runs: number;
}>;

// Generators, the documented answers and how to run with random seeds: packages/http/test/fuzz.ts.
for (const version of versions) {
  describe(`@floodgate/express on ${version.name} under hostile requests (real socket)`, () => {
    const watch = new LeakWatch();
    beforeAll(() => watch.install());
    afterAll(() => watch.uninstall());

    it('answers only what the READMEs document: no 5xx but load shedding, no hang, no unhandled rejection, replays true to their original', async () => {
      await fc.assert(
        fc.asyncProperty(hostileScenario, async (scenario) => {
          await watch.around(async () => {
            const controls = new FuzzControls();
            const app = await startExpressApp(
              fuzzOptions(controls, scenario.variant),
              controls,
              version.express,
            );
            try {
              await runScenario(app.client, controls, scenario, version.parser);
            } finally {
              controls.close();
              await app.close();
            }
          });
        }),
        fuzzParameters(version.runs),
      );
    }, 60_000);
  });
}
