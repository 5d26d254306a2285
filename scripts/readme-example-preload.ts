// Preloaded (`--import`) into a README example run by scripts/readme-examples.test.ts, after tsx.
// - Registers readme-example-hooks.ts, which fails any @floodgate/* import that lands on a dist/ build.
// - Moves a server example off port 3000 (readme-example-port.ts).
import module from 'node:module';
import { assertWorkspaceSource } from './readme-example-hooks.ts';
import './readme-example-port.ts';

// Synchronous in-thread hooks where Node has them (22.15+; @types/node 20 does not declare them), where tsx
// may use them too and a hooks thread would have no tsx to load a .ts file; module.register() before that.
type SyncResolve = (specifier: string, context: unknown) => { url: string };
const { registerHooks } = module as {
  registerHooks?: (hooks: {
    resolve: (specifier: string, context: unknown, next: SyncResolve) => unknown;
  }) => unknown;
};
if (registerHooks === undefined) {
  module.register('./readme-example-hooks.ts', import.meta.url);
} else {
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const resolved = nextResolve(specifier, context);
      assertWorkspaceSource(specifier, resolved.url);
      return resolved;
    },
  });
}
