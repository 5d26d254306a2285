// Module hooks for a README example run by scripts/readme-examples.test.ts: @floodgate/* must resolve to
// the workspace source (tsconfig `paths`, applied by tsx), never to a package's dist/. CI runs the tests
// before `pnpm build`, and a stale local dist/ would test yesterday's code, so either way is a failure.
import type { ResolveHook } from 'node:module';

const BUILD_OUTPUT = /\/packages\/[^/]+\/dist\//;

/** @throws Error when `url`, what `specifier` resolved to, is a workspace package's build. */
export function assertWorkspaceSource(specifier: string, url: string): void {
  if (BUILD_OUTPUT.test(url)) {
    throw new Error(
      `README example: ${specifier} resolved to the build ${url}, expected the workspace source ` +
        '(packages/*/src via tsconfig paths; is TSX_TSCONFIG_PATH set to the root tsconfig.json?)',
    );
  }
}

/** For `module.register()` (Node 20): runs after tsx's resolve, on the hooks thread. */
export const resolve: ResolveHook = async (specifier, context, nextResolve) => {
  const resolved = await nextResolve(specifier, context);
  assertWorkspaceSource(specifier, resolved.url);
  return resolved;
};
