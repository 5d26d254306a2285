// What each published package imports, read with the TypeScript compiler, and what a consumer's install
// gives it. Used by package-dependencies.test.ts: publint and attw check the package contract, not that
// `npm install @floodgate/x` brings everything x's code and x's types load.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const repo = fileURLToPath(new URL('../', import.meta.url));

/** One module a file names: `import`, `export … from`, `require()`, `import()`, `import('x').T`. */
export interface ModuleReference {
  /** `undefined` for a computed `require(x)` / `import(x)`, which no tool can follow. */
  specifier: string | undefined;
  /** 1-based. */
  line: number;
  /**
   * Erased from the JavaScript build: `import type`, `export type … from`, `import('x').T`. `import { type A }`
   * is not: under `verbatimModuleSyntax` it stays as `import {} from 'x'`, which loads `x`.
   */
  typeOnly: boolean;
}

/** A call that loads or resolves a module: `require(…)`, `require.resolve(…)`, `createRequire(…)(…)`. */
function isRequireLike(callee: ts.Expression): boolean {
  if (ts.isIdentifier(callee)) return callee.text === 'require';
  if (ts.isCallExpression(callee))
    return ts.isIdentifier(callee.expression) && callee.expression.text === 'createRequire';
  if (ts.isPropertyAccessExpression(callee))
    return callee.name.text === 'resolve' && isRequireLike(callee.expression);
  return false;
}

/** Every module `text` names in code (comments and strings are not code: a TSDoc `@example` is skipped). */
export function moduleReferences(fileName: string, text: string): ModuleReference[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found: ModuleReference[] = [];
  const add = (node: ts.Node, specifier: string | undefined, typeOnly: boolean) => {
    const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
    found.push({ specifier, line, typeOnly });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node, node.moduleSpecifier.text, node.importClause?.isTypeOnly ?? false);
    } else if (
      ts.isExportDeclaration(node) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      add(node, node.moduleSpecifier.text, node.isTypeOnly);
    } else if (
      ts.isImportEqualsDeclaration(node) &&
      ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteral(node.moduleReference.expression)
    ) {
      add(node, node.moduleReference.expression.text, node.isTypeOnly);
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      add(node, node.argument.literal.text, true);
    } else if (
      ts.isCallExpression(node) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword || isRequireLike(node.expression))
    ) {
      const [first] = node.arguments;
      add(node, first !== undefined && ts.isStringLiteralLike(first) ? first.text : undefined, false);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  for (const directive of source.typeReferenceDirectives) {
    found.push({
      specifier: directive.fileName,
      line: source.getLineAndCharacterOfPosition(directive.pos).line + 1,
      typeOnly: true,
    });
  }
  return found;
}

/** `@scope/name/deep` → `@scope/name`, `name/deep` → `name`. */
export function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** `@types/scope__name` → `@scope/name`, `@types/name` → `name`; anything else → `undefined`. */
export function typedPackage(typesPackage: string): string | undefined {
  if (!typesPackage.startsWith('@types/')) return undefined;
  const name = typesPackage.slice('@types/'.length);
  return name.includes('__') ? `@${name.replace('__', '/')}` : name;
}

export type SpecifierKind = 'node-builtin' | 'bare-builtin' | 'relative' | 'package';

export function specifierKind(specifier: string): SpecifierKind {
  if (specifier.startsWith('node:')) return 'node-builtin';
  if (specifier.startsWith('.') || specifier.startsWith('/')) return 'relative';
  return isBuiltin(specifier) ? 'bare-builtin' : 'package';
}

interface Manifest {
  name: string;
  version?: string;
  private?: boolean;
  engines?: Record<string, string>;
  exports?: unknown;
  bin?: string | Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

/** The dependency fields a consumer's install reads (devDependencies never reach a consumer). */
export const PUBLISHED_FIELDS = ['dependencies', 'peerDependencies', 'optionalDependencies'] as const;

export interface WorkspacePackage {
  /** The directory under packages/, e.g. `express`. */
  dir: string;
  /** Absolute path of the package. */
  root: string;
  manifest: Manifest;
  /** Absolute paths of the source files the build starts from (`exports` and `bin`, dist → src). */
  entries: string[];
}

const DIST_TARGET = /^\.\/dist\/(.+?)\.(?:js|cjs|mjs|d\.ts|d\.cts|d\.mts)$/;

/**
 * Every `./dist/….js|cjs|d.ts` a manifest's `exports` and `bin` name, as `src/….ts`. A `bin` may name a
 * committed launcher outside dist/ (bank-sim's, so a fresh clone can link it before the build): the dist
 * files it imports are followed instead.
 */
function entryFiles(root: string, manifest: Manifest): string[] {
  const targets: string[] = [];
  const collect = (value: unknown): void => {
    if (typeof value === 'string') targets.push(value);
    else if (typeof value === 'object' && value !== null)
      for (const inner of Object.values(value)) collect(inner);
  };
  collect(manifest.exports);
  collect(manifest.bin);
  const entries = new Set<string>();
  for (const target of targets) {
    const match = DIST_TARGET.exec(target);
    if (match !== null) entries.add(join(root, 'src', `${match[1]}.ts`));
    else if (existsSync(join(root, target))) {
      const launcher = readFileSync(join(root, target), 'utf8');
      for (const [, imported] of launcher.matchAll(/import\s+['"]\.\.\/(dist\/[^'"]+)['"]/g)) {
        const inner = DIST_TARGET.exec(`./${imported}`);
        if (inner !== null) entries.add(join(root, 'src', `${inner[1]}.ts`));
      }
    }
  }
  return [...entries];
}

/** The packages under packages/, in directory order. */
export function workspacePackages(): WorkspacePackage[] {
  const packagesDir = join(repo, 'packages');
  return readdirSync(packagesDir)
    .filter((dir) => existsSync(join(packagesDir, dir, 'package.json')))
    .map((dir) => {
      const root = join(packagesDir, dir);
      const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Manifest;
      return { dir, root, manifest, entries: entryFiles(root, manifest) };
    });
}

/** `./x.js` next to `from` → the file it names among `files` (`x.ts`, `x.d.ts`, `x/index.ts`...). */
function resolveRelative(
  from: string,
  specifier: string,
  exists: (file: string) => boolean,
): string | undefined {
  const base = resolve(dirname(from), specifier);
  const stem = base.replace(/\.(?:js|ts|mjs|mts|cjs|cts)$/, '');
  const candidates = [base, `${stem}.ts`, `${stem}.d.ts`, join(base, 'index.ts'), join(base, 'index.d.ts')];
  return candidates.find(exists);
}

/** One module reference with the file it is in, relative to its package (`src/client.ts`). */
export interface LocatedReference extends ModuleReference {
  file: string;
}

/**
 * The module references of every file reachable from `entries` through relative imports: what the build
 * bundles, so tests and test helpers are left out by construction. `read` answers a file's text or
 * `undefined` when there is none.
 */
export function reachableReferences(
  root: string,
  entries: readonly string[],
  read: (file: string) => string | undefined,
): LocatedReference[] {
  const seen = new Set<string>();
  const queue = [...entries];
  const references: LocatedReference[] = [];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    if (seen.has(file)) continue;
    seen.add(file);
    const text = read(file);
    if (text === undefined)
      throw new Error(`${relative(repo, file)} is an entry or import that does not exist`);
    for (const reference of moduleReferences(file, text)) {
      references.push({ ...reference, file: relative(root, file) });
      if (reference.specifier !== undefined && specifierKind(reference.specifier) === 'relative') {
        const target = resolveRelative(
          file,
          reference.specifier,
          (candidate) => read(candidate) !== undefined,
        );
        if (target !== undefined) queue.push(target);
      }
    }
  }
  return references;
}

/** Reads a source file from disk (`undefined` when missing). */
export function readSource(file: string): string | undefined {
  return existsSync(file) && statSync(file).isFile() ? readFileSync(file, 'utf8') : undefined;
}

let cachedOptions: ts.CompilerOptions | undefined;

/** The root tsconfig's options: @floodgate/* resolve to each package's src, as the build's dts step sees them. */
export function rootCompilerOptions(): ts.CompilerOptions {
  if (cachedOptions === undefined) {
    const parsed = ts.getParsedCommandLineOfConfigFile(join(repo, 'tsconfig.json'), undefined, {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      },
    });
    if (parsed === undefined) throw new Error('cannot read tsconfig.json');
    cachedOptions = parsed.options;
  }
  return cachedOptions;
}

/**
 * The declaration files tsc emits for `entries` and everything they reach, by absolute path, in memory.
 * The types a consumer gets are these (tsup's dts step bundles them into one file per entry, keeping every
 * import from another package as it is), so a package they name must come with the consumer's install.
 */
export function emitDeclarations(entries: readonly string[]): Map<string, string> {
  const program = ts.createProgram({
    rootNames: [...entries],
    options: {
      ...rootCompilerOptions(),
      noEmit: false,
      declaration: true,
      emitDeclarationOnly: true,
      sourceMap: false,
      declarationMap: false,
    },
  });
  const emitted = new Map<string, string>();
  const result = program.emit(undefined, (file, text) => emitted.set(resolve(repo, file), text));
  if (result.emitSkipped) {
    const messages = result.diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    throw new Error(`declaration emit failed:\n${messages.join('\n')}`);
  }
  return emitted;
}

/** Where the types of `specifier`, imported from `root`'s source, come from for `root` in this workspace. */
export type TypesSource =
  | { from: 'package' }
  | { from: 'definitely-typed'; typesPackage: string }
  | { from: 'none' };

export function typesSource(root: string, specifier: string): TypesSource {
  const { resolvedModule: resolved } = ts.resolveModuleName(
    specifier,
    join(root, 'src', 'index.ts'),
    rootCompilerOptions(),
    ts.sys,
    undefined,
    undefined,
    ts.ModuleKind.ESNext,
  );
  // An untyped package resolves to its JavaScript (or not at all): its names are `any` for the consumer.
  if (resolved === undefined || !/\.[cm]?ts$/.test(resolved.resolvedFileName)) return { from: 'none' };
  const typesPackage = resolved.packageId?.name;
  if (typesPackage?.startsWith('@types/')) return { from: 'definitely-typed', typesPackage };
  return { from: 'package' };
}

type DependencyField = (typeof PUBLISHED_FIELDS)[number] | 'devDependencies';

/** The field of `manifest` that declares `name`, published fields first. */
function declaringField(manifest: Manifest, name: string): DependencyField | undefined {
  return [...PUBLISHED_FIELDS, 'devDependencies' as const].find(
    (field) => manifest[field]?.[name] !== undefined,
  );
}

function isPublished(field: DependencyField | undefined): boolean {
  return field !== undefined && field !== 'devDependencies';
}

function notDeclared(field: DependencyField | undefined): string {
  return field === 'devDependencies'
    ? 'only in devDependencies, which a consumer does not install'
    : 'not in dependencies or peerDependencies';
}

/**
 * Each module the published source names must reach a consumer: a `node:` builtin, a relative file, or a
 * package in `dependencies`/`peerDependencies`. A type-only import may name a devDependency: the build
 * erases it, and {@link declarationProblems} finds the ones that reach the published types.
 */
export function sourceImportProblems(
  pkg: WorkspacePackage,
  references: readonly LocatedReference[],
): string[] {
  const problems: string[] = [];
  for (const { specifier, file, line, typeOnly } of references) {
    const where = `${pkg.manifest.name}: ${file}:${line}`;
    if (specifier === undefined) {
      problems.push(
        `${where}: a computed require()/import(): name the module literally so it can be checked`,
      );
      continue;
    }
    const kind = specifierKind(specifier);
    if (kind === 'bare-builtin') {
      problems.push(`${where}: '${specifier}' is a Node builtin: import it as 'node:${specifier}'`);
    } else if (kind === 'node-builtin' && !isBuiltin(specifier)) {
      problems.push(`${where}: '${specifier}' is not a Node builtin`);
    } else if (kind === 'package') {
      const name = packageName(specifier);
      const field = declaringField(pkg.manifest, name);
      if (isPublished(field) || (typeOnly && field === 'devDependencies')) continue;
      problems.push(`${where}: imports '${specifier}', but '${name}' is ${notDeclared(field)}`);
    }
  }
  return problems;
}

/**
 * Each package the published types import must come with the consumer's install, and with types: a
 * dependency typed by DefinitelyTyped needs its `@types/…` in `dependencies` too (else the consumer's
 * compiler finds no declaration file, an error without `skipLibCheck` and `any` with it). A peer typed by
 * DefinitelyTyped is the consumer's own import (they install `express` and write `import express`), so
 * its `@types/…` is theirs to install, as every Express middleware on npm expects.
 */
export function declarationProblems(
  pkg: WorkspacePackage,
  references: readonly LocatedReference[],
): string[] {
  const problems: string[] = [];
  const reported = new Set<string>();
  for (const { specifier, file } of references) {
    if (specifier === undefined || specifier === 'node' || specifierKind(specifier) !== 'package') continue;
    const name = packageName(specifier);
    const source = file.replace(/\.d\.ts$/, '.ts');
    const where = `${pkg.manifest.name}: its published types import '${specifier}' (from ${source})`;
    if (reported.has(name)) continue;
    const field = declaringField(pkg.manifest, name);
    let problem: string | undefined;
    if (!isPublished(field)) {
      problem = `${where}, but '${name}' is ${notDeclared(field)}`;
    } else {
      const types = typesSource(pkg.root, specifier);
      if (types.from === 'none') {
        problem = `${where}, but '${name}' has no types and no @types package is installed`;
      } else if (types.from === 'definitely-typed' && field !== 'peerDependencies') {
        const typesField = declaringField(pkg.manifest, types.typesPackage);
        if (!isPublished(typesField)) {
          problem =
            `${where}, whose types are '${types.typesPackage}', ${notDeclared(typesField)}: ` +
            `a consumer's compiler finds no types for '${name}' (TS7016, or \`any\` under skipLibCheck)`;
        }
      }
    }
    if (problem !== undefined) {
      reported.add(name);
      problems.push(problem);
    }
  }
  return problems;
}

/** Each dependency and peer a consumer installs is used by the published source or its types. */
export function unusedDependencyProblems(
  pkg: WorkspacePackage,
  references: readonly LocatedReference[],
): string[] {
  const used = new Set(
    references
      .map(({ specifier }) => specifier)
      .filter((specifier) => specifier !== undefined && specifierKind(specifier) === 'package')
      .map((specifier) => packageName(specifier as string)),
  );
  const problems: string[] = [];
  for (const field of PUBLISHED_FIELDS) {
    for (const name of Object.keys(pkg.manifest[field] ?? {})) {
      const typed = typedPackage(name);
      if (used.has(name) || (typed !== undefined && used.has(typed))) continue;
      problems.push(
        `${pkg.manifest.name}: '${name}' is in ${field}, but neither its published source nor its types ` +
          'import it: every consumer installs it for nothing',
      );
    }
  }
  return problems;
}

/** The Node range every package supports (the root package.json and README say the same). */
export const NODE_ENGINES = '>=20.18';

/**
 * `workspace:^` in the fields a consumer reads (pnpm publishes `workspace:*` as the exact version, which
 * pins consumers to it and duplicates packages), and `engines.node` of {@link NODE_ENGINES}.
 */
export function manifestProblems(pkg: WorkspacePackage): string[] {
  const problems: string[] = [];
  for (const field of PUBLISHED_FIELDS) {
    for (const [name, range] of Object.entries(pkg.manifest[field] ?? {})) {
      if (range.startsWith('workspace:') && range !== 'workspace:^') {
        problems.push(`${pkg.manifest.name}: ${field}['${name}'] is '${range}', expected 'workspace:^'`);
      }
    }
  }
  const engines = pkg.manifest.engines?.node;
  if (engines !== NODE_ENGINES) {
    problems.push(
      `${pkg.manifest.name}: engines.node is ${JSON.stringify(engines)}, expected '${NODE_ENGINES}'`,
    );
  }
  return problems;
}
