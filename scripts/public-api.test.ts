// "Public API has TSDoc. Errors are exported classes with a stable `code`." and each README's errors table
// says which: checked here, from each package's `exports` entry points, read with the TypeScript compiler
// (needs no build). Each failure lists every gap of its kind at once.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { type WorkspacePackage, workspacePackages } from './package-dependencies.js';
import {
  type ErrorClass,
  type ErrorExceptions,
  errorCodes,
  errorSites,
  exportedErrorClasses,
  publicApiProgram,
  readmeErrorProblems,
  readmeErrorRows,
  undocumented,
} from './public-api.js';

/** The reviewed exceptions to the error rules, with their reasons. */
const EXCEPTIONS: Record<string, ErrorExceptions> = {
  '@floodgate/payment-retry': {
    computedCode: {
      // The floodgate contract: a breaker classifies a failed attempt by the transport's code
      // (`ECONNRESET`, `UND_ERR_HEADERS_TIMEOUT`), as it would the raw error. It never reaches `pay()`'s caller.
      AttemptError: "carries the transport's code",
    },
    internal: {
      // The client's AttemptError with the classified step attached; the breaker sees an AttemptError.
      StepError: 'an AttemptError with the step the client classified',
    },
  },
};

const packages = workspacePackages();
// One program for every package (~4 s), as package-dependencies.test.ts does for the declarations.
const program = publicApiProgram(packages);
const sitesByPackage = new Map(
  packages.map((pkg) => [pkg.manifest.name, errorSites(program, pkg, packages)]),
);

/** The code of an error class whose constructor does not take one: constructed without arguments. */
async function runtimeCode(pkg: WorkspacePackage, errorClass: ErrorClass): Promise<unknown> {
  const entry = pkg.entries.find((file) => file.endsWith(join('src', 'index.ts'))) ?? pkg.entries[0];
  const module = (await import(pathToFileURL(entry as string).href)) as Record<string, unknown>;
  const Class = module[errorClass.name] as new () => { code?: unknown };
  try {
    return new Class().code;
  } catch (error) {
    return `(cannot construct ${errorClass.name} without arguments: ${(error as Error).message})`;
  }
}

async function codesOf(pkg: WorkspacePackage) {
  const classes = exportedErrorClasses(program, pkg, packages);
  const runtime = new Map<ErrorClass, unknown>();
  for (const errorClass of classes)
    if (!errorClass.takesCode) runtime.set(errorClass, await runtimeCode(pkg, errorClass));
  return errorCodes(
    program,
    pkg,
    classes,
    sitesByPackage,
    (errorClass) => runtime.get(errorClass),
    EXCEPTIONS[pkg.manifest.name],
  );
}

describe('the checks, on a made-up package', () => {
  const root = '/virtual/fake';
  const files: Record<string, string> = {
    [`${root}/src/index.ts`]: [
      "export { bare, documented, implementationOnly, overloaded, LIMIT } from './api.js';",
      "export type { Alias, Options, Variant } from './api.js';",
      "export { BaseError, HiddenUser, WidgetError, Widget } from './widget.js';",
      "export { borrowed } from '../../other/src/borrowed.js';",
    ].join('\n'),
    [`${root}/src/api.ts`]: [
      '/** Documented. */',
      'export function documented(): void {}',
      'export function bare(): void {}',
      '/** The string form. */',
      'export function overloaded(a: string): void;',
      'export function overloaded(a: number): void;',
      'export function overloaded(_a: unknown): void {}',
      'export function implementationOnly(a: string): void;',
      '/** Only here: dropped from the declarations. */',
      'export function implementationOnly(_a: unknown): void {}',
      '/** A bound. */',
      'export const LIMIT = 5;',
      '/** Options. */',
      'export interface Options {',
      '  /** Retries. @default 3 */',
      '  readonly retries?: number;',
      '  /** @default 1 */',
      '  readonly tagOnly?: number;',
      '  /** Nested. */',
      '  readonly nested?: { readonly inner: number } | undefined;',
      '}',
      '/** An alias. */',
      'export type Alias = { readonly field: string };',
      '/** A union. */',
      "export type Variant = { readonly kind: 'a'; readonly value: number } | { readonly kind: 'b' };",
    ].join('\n'),
    [`${root}/src/widget.ts`]: [
      '/** The base. */',
      'export class BaseError extends Error {',
      '  /** The code. */',
      '  readonly code: string;',
      '  constructor(code: string) {',
      '    super(code);',
      '    this.code = code;',
      '  }',
      '}',
      '/** A widget error. */',
      'export class WidgetError extends BaseError {',
      "  declare readonly code: 'ERR_WIDGET';",
      '  readonly size: number = 1;',
      '  constructor() {',
      "    super('ERR_WIDGET');",
      '  }',
      '}',
      'class HiddenError extends BaseError {}',
      '/** A widget. */',
      'export class Widget {',
      '  /** Documented. */',
      '  readonly name = "w";',
      '  open(): void {',
      "    throw new BaseError('ERR_CLOSED');",
      '  }',
      '  #secret = 1;',
      '  private hidden = 2;',
      '  /** @internal */',
      '  _forAdapters(): void {}',
      '}',
      '/** Uses them. */',
      'export function HiddenUser(code: string): never {',
      "  if (code === '') throw new HiddenError('ERR_HIDDEN');",
      '  throw new BaseError(code);',
      '}',
    ].join('\n'),
    '/virtual/other/src/borrowed.ts': 'export const borrowed = 1;',
  };
  const host = ts.createCompilerHost({});
  const fileExists = host.fileExists.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  const directoryExists = host.directoryExists?.bind(host);
  host.fileExists = (file) => file in files || fileExists(file);
  host.directoryExists = (dir) =>
    Object.keys(files).some((file) => file.startsWith(`${dir}/`)) || (directoryExists?.(dir) ?? false);
  host.readFile = (file) => files[file] ?? ts.sys.readFile(file);
  host.getSourceFile = (file, language) =>
    file in files
      ? ts.createSourceFile(file, files[file] as string, language, true)
      : getSourceFile(file, language);
  const fake: WorkspacePackage = {
    dir: 'fake',
    root,
    entries: [`${root}/src/index.ts`],
    manifest: { name: '@floodgate/fake' },
  };
  const fakeProgram = publicApiProgram([fake], host);

  it('names each undocumented export and public member, and lets inherited, internal and foreign ones by', () => {
    expect(undocumented(fakeProgram, fake)).toEqual([
      '@floodgate/fake: src/api.ts:3 bare',
      '@floodgate/fake: src/api.ts:8 implementationOnly',
      '@floodgate/fake: src/api.ts:18 Options.tagOnly',
      '@floodgate/fake: src/api.ts:20 Options.nested.inner',
      '@floodgate/fake: src/api.ts:23 Alias.field',
      '@floodgate/fake: src/api.ts:25 Variant.value',
      '@floodgate/fake: src/widget.ts:13 WidgetError.size',
      '@floodgate/fake: src/widget.ts:23 Widget.open',
    ]);
  });

  it('reads codes, names computed codes and error classes it does not export, and checks the README', () => {
    const classes = exportedErrorClasses(fakeProgram, fake, [fake]);
    const sites = new Map([[fake.manifest.name, errorSites(fakeProgram, fake, [fake])]]);
    const { codes, problems } = errorCodes(fakeProgram, fake, classes, sites, () => 'ERR_WIDGET');
    expect(Object.fromEntries([...codes].map(([errorClass, set]) => [errorClass.name, [...set]]))).toEqual({
      BaseError: ['ERR_CLOSED'],
      WidgetError: ['ERR_WIDGET'],
    });
    expect(problems).toEqual([
      '@floodgate/fake: src/widget.ts:34 new BaseError(…) computes its code: pass a literal ERR_… code',
      '@floodgate/fake: src/widget.ts:33 creates a HiddenError, which @floodgate/fake does not export',
    ]);
    const readme = [
      '## Errors',
      '',
      '| class | `code` | when | fields |',
      '| --- | --- | --- | --- |',
      '| `BaseError` | (base) | every error | `code` |',
      '| `WidgetError` | `ERR_WIDGET`, `ERR_GONE` | a widget failed | `size` |',
      '| `OldError` | `ERR_OLD` | removed | |',
      '',
      '## Next',
      '| `Ignored` | `ERR_X` | not in the section | |',
    ].join('\n');
    expect(readmeErrorProblems(fake, readmeErrorRows(readme), codes)).toEqual([
      '@floodgate/fake: README.md: ERR_CLOSED of BaseError is not in the errors table',
      '@floodgate/fake: README.md:6 lists ERR_GONE for WidgetError, which never has it',
      '@floodgate/fake: README.md:7 lists OldError, which is not an exported error class',
    ]);
    expect(readmeErrorProblems(fake, undefined, codes)).toEqual([
      '@floodgate/fake: README.md has no "## Errors" section with a table of its error classes',
    ]);
  });
});

describe.each(packages.map((pkg) => [pkg.manifest.name, pkg] as const))('%s', (_, pkg) => {
  it('documents every exported value and type, and their public members, with TSDoc', () => {
    expect(undocumented(program, pkg)).toEqual([]);
  });

  it('exports every error class its source creates, each with a stable, unique ERR_ code', async () => {
    expect((await codesOf(pkg)).problems).toEqual([]);
  });

  it("lists every exported error class and its codes in the README's errors table, and nothing else", async () => {
    const { codes, computed } = await codesOf(pkg);
    const rows = readmeErrorRows(readFileSync(join(pkg.root, 'README.md'), 'utf8'));
    expect(readmeErrorProblems(pkg, rows, codes, computed)).toEqual([]);
  });
});
