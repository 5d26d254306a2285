// What a consumer's `npm install @floodgate/x` brings must be what x's code and x's published types load:
// publint and attw check the package contract, not the dependency lists. Reads the source with the
// TypeScript compiler and emits the declarations in memory, so it needs no build.
import { describe, expect, it } from 'vitest';
import {
  declarationProblems,
  emitDeclarations,
  type LocatedReference,
  manifestProblems,
  moduleReferences,
  packageName,
  reachableReferences,
  readSource,
  sourceImportProblems,
  specifierKind,
  typedPackage,
  unusedDependencyProblems,
  type WorkspacePackage,
  workspacePackages,
} from './package-dependencies.js';

const packages = workspacePackages();
// One program for every package (~4 s): the declarations tsc emits are the types a consumer gets.
const declarations = emitDeclarations(packages.flatMap((pkg) => pkg.entries));

function sourceReferences(pkg: WorkspacePackage): LocatedReference[] {
  return reachableReferences(pkg.root, pkg.entries, readSource);
}

function declarationReferences(pkg: WorkspacePackage): LocatedReference[] {
  const entries = pkg.entries.map((entry) => entry.replace(/\.ts$/, '.d.ts'));
  return reachableReferences(pkg.root, entries, (file) => declarations.get(file));
}

describe('reading module references', () => {
  it('finds imports, re-exports, require, require.resolve, createRequire and import(), not comments', () => {
    const code = [
      "import a from 'a';",
      "import type { B } from 'b';",
      "import { type C } from 'c';",
      "export { d } from './d.js';",
      "export type { E } from 'e';",
      "const f = require('f');",
      "const g = createRequire(import.meta.url)('g/package.json');",
      "const h = createRequire(import.meta.url).resolve('h');",
      "const i = await import('node:i');",
      "type J = import('j').J;",
      "/** @example import k from 'k'; */",
      'const l = \'require("l")\';',
      'const m = require(name);',
    ].join('\n');
    expect(moduleReferences('x.ts', code)).toEqual([
      { specifier: 'a', line: 1, typeOnly: false },
      { specifier: 'b', line: 2, typeOnly: true },
      // `import { type C }` keeps `import {} from 'c'` under verbatimModuleSyntax: it loads c.
      { specifier: 'c', line: 3, typeOnly: false },
      { specifier: './d.js', line: 4, typeOnly: false },
      { specifier: 'e', line: 5, typeOnly: true },
      { specifier: 'f', line: 6, typeOnly: false },
      { specifier: 'g/package.json', line: 7, typeOnly: false },
      { specifier: 'h', line: 8, typeOnly: false },
      { specifier: 'node:i', line: 9, typeOnly: false },
      { specifier: 'j', line: 10, typeOnly: true },
      { specifier: undefined, line: 13, typeOnly: false },
    ]);
  });

  it('names packages, @types packages and builtins', () => {
    expect(['@a/b/c', 'x/y', 'z'].map(packageName)).toEqual(['@a/b', 'x', 'z']);
    expect(['@types/a__b', '@types/express', 'express'].map(typedPackage)).toEqual([
      '@a/b',
      'express',
      undefined,
    ]);
    expect(['node:fs', 'fs', 'util/types', './x.js', 'undici'].map(specifierKind)).toEqual([
      'node-builtin',
      'bare-builtin',
      'bare-builtin',
      'relative',
      'package',
    ]);
  });
});

describe('the checks, on a made-up package', () => {
  const fake: WorkspacePackage = {
    dir: 'fake',
    root: '/nowhere/fake',
    entries: [],
    manifest: {
      name: '@floodgate/fake',
      engines: { node: '>=18' },
      dependencies: { dep: '^1.0.0', '@floodgate/http': 'workspace:*', unused: '^1.0.0' },
      peerDependencies: { peer: '^1.0.0' },
      devDependencies: { dev: '^1.0.0' },
    },
  };
  const at = (specifier: string | undefined, typeOnly = false): LocatedReference => ({
    specifier,
    typeOnly,
    file: 'src/index.ts',
    line: 1,
  });

  it('names each import a consumer cannot resolve, and lets erased type imports of devDependencies by', () => {
    const references = [
      at('node:fs'),
      at('./x.js'),
      at('dep/deep'),
      at('peer'),
      at('dev', true),
      at('fs'),
      at('node:nope'),
      at('dev'),
      at('nowhere', true),
      at(undefined),
    ];
    expect(sourceImportProblems(fake, references)).toEqual([
      "@floodgate/fake: src/index.ts:1: 'fs' is a Node builtin: import it as 'node:fs'",
      "@floodgate/fake: src/index.ts:1: 'node:nope' is not a Node builtin",
      "@floodgate/fake: src/index.ts:1: imports 'dev', but 'dev' is only in devDependencies, which a consumer does not install",
      "@floodgate/fake: src/index.ts:1: imports 'nowhere', but 'nowhere' is not in dependencies or peerDependencies",
      '@floodgate/fake: src/index.ts:1: a computed require()/import(): name the module literally so it can be checked',
    ]);
  });

  it('names a devDependency that reaches the published types', () => {
    expect(declarationProblems(fake, [{ ...at('dev', true), file: 'src/index.d.ts' }])).toEqual([
      "@floodgate/fake: its published types import 'dev' (from src/index.ts), but 'dev' is only in devDependencies, which a consumer does not install",
    ]);
  });

  it('names dependencies nothing imports, workspace ranges other than ^, and another Node range', () => {
    expect(unusedDependencyProblems(fake, [at('dep'), at('@floodgate/http'), at('peer', true)])).toEqual([
      "@floodgate/fake: 'unused' is in dependencies, but neither its published source nor its types import it: every consumer installs it for nothing",
    ]);
    expect(manifestProblems(fake)).toEqual([
      "@floodgate/fake: dependencies['@floodgate/http'] is 'workspace:*', expected 'workspace:^'",
      `@floodgate/fake: engines.node is ">=18", expected '>=20.18'`,
    ]);
  });
});

describe.each(packages.map((pkg) => [pkg.manifest.name, pkg] as const))('%s', (_, pkg) => {
  it('has entry points (exports and bin, dist → src)', () => {
    expect(pkg.entries.length).toBeGreaterThan(0);
  });

  it('imports only node: builtins, its own files, dependencies and peers', () => {
    expect(sourceImportProblems(pkg, sourceReferences(pkg))).toEqual([]);
  });

  it('publishes types whose imports a consumer can resolve, with types', () => {
    expect(declarationProblems(pkg, declarationReferences(pkg))).toEqual([]);
  });

  it('uses every dependency and peer it declares', () => {
    const references = [...sourceReferences(pkg), ...declarationReferences(pkg)];
    expect(unusedDependencyProblems(pkg, references)).toEqual([]);
  });

  it("uses workspace:^ for its workspace dependencies and supports the workspace's Node", () => {
    expect(manifestProblems(pkg)).toEqual([]);
  });
});
