// Each package's public API, read with the TypeScript compiler from its `exports` entries: what has no
// TSDoc, which error classes it exports, where its source creates errors and with which `code`, and what
// its README's errors table says. Used by public-api.test.ts: "Public API has TSDoc. Errors are exported
// classes with a stable `code`." is a house standard nothing else checks.
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { rootCompilerOptions, type WorkspacePackage } from './package-dependencies.js';

/** One program over the entry points of `packages`: @floodgate/* resolve to their src, as in the build. */
export function publicApiProgram(packages: readonly WorkspacePackage[], host?: ts.CompilerHost): ts.Program {
  const options = rootCompilerOptions();
  const rootNames = packages.flatMap((pkg) => pkg.entries);
  return ts.createProgram(host === undefined ? { rootNames, options } : { rootNames, options, host });
}

/** Whether `node` is in `pkg`'s own source (not another workspace package's, not node_modules). */
function inPackage(pkg: WorkspacePackage, node: ts.Node): boolean {
  return resolve(node.getSourceFile().fileName).startsWith(`${join(pkg.root, 'src')}/`);
}

/** `@floodgate/x: src/file.ts:12`, the line of the declaration (not of its comment). */
function where(pkg: WorkspacePackage, node: ts.Node): string {
  const source = node.getSourceFile();
  const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
  return `${pkg.manifest.name}: ${relative(pkg.root, resolve(source.fileName))}:${line}`;
}

/** An exported name and what it stands for, aliases (`export { x } from`) resolved. */
export interface PublicExport {
  name: string;
  symbol: ts.Symbol;
}

/** Every name `pkg`'s entry points export, once per symbol and name. */
export function publicExports(program: ts.Program, pkg: WorkspacePackage): PublicExport[] {
  const checker = program.getTypeChecker();
  const found = new Map<string, PublicExport>();
  for (const entry of pkg.entries) {
    const source = program.getSourceFile(entry);
    const module = source === undefined ? undefined : checker.getSymbolAtLocation(source);
    if (module === undefined) throw new Error(`${pkg.manifest.name}: cannot read the exports of ${entry}`);
    for (const exported of checker.getExportsOfModule(module)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      found.set(exported.name, { name: exported.name, symbol });
    }
  }
  return [...found.values()];
}

/** A `/** … *\/` comment with text on `node` (tags alone, such as a bare `@default`, say nothing of what it is). */
function hasOwnDoc(node: ts.Node): boolean {
  return ts
    .getJSDocCommentsAndTags(node)
    .some((doc) => ts.isJSDoc(doc) && (ts.getTextOfJSDocComment(doc.comment) ?? '').trim() !== '');
}

/**
 * Whether `symbol` is documented where a consumer reads it. An overload set needs a comment on one of its
 * signatures: the implementation's is dropped from the declarations. A class or interface member without
 * one inherits its base's or interface's (as TSDoc's `@inheritDoc` and the editor's hover do), so an
 * override such as `declare readonly code: 'ERR_X'` need not repeat it.
 */
function isDocumented(checker: ts.TypeChecker, symbol: ts.Symbol, inherits: boolean): boolean {
  const declarations = symbol.declarations ?? [];
  const visible = declarations.filter(
    (node) => !(ts.isFunctionLike(node) && checker.isImplementationOfOverload(node)),
  );
  if (visible.some(hasOwnDoc)) return true;
  if (declarations.some(hasOwnDoc)) return false;
  return inherits && symbol.getDocumentationComment(checker).some((part) => part.text.trim() !== '');
}

/** Private, protected, `#private`, or marked `@internal` (public to the package's adapters, not to users). */
function isHidden(node: ts.Declaration): boolean {
  if (ts.getJSDocTags(node).some((tag) => tag.tagName.text === 'internal')) return true;
  if (ts.getCombinedModifierFlags(node) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected))
    return true;
  const name = ts.getNameOfDeclaration(node);
  return name !== undefined && ts.isPrivateIdentifier(name);
}

/** The object type literals a type annotation is made of: `{…}`, `{…} | undefined`, `Array<{…}>`, `{…}[]`. */
function typeLiterals(node: ts.TypeNode | undefined): ts.TypeLiteralNode[] {
  if (node === undefined) return [];
  if (ts.isTypeLiteralNode(node)) return [node];
  if (ts.isUnionTypeNode(node) || ts.isIntersectionTypeNode(node)) return node.types.flatMap(typeLiterals);
  if (ts.isParenthesizedTypeNode(node) || ts.isTypeOperatorNode(node)) return typeLiterals(node.type);
  if (ts.isArrayTypeNode(node)) return typeLiterals(node.elementType);
  if (ts.isTypeReferenceNode(node)) return (node.typeArguments ?? []).flatMap(typeLiterals);
  return [];
}

/**
 * `kind: 'paid'`: a property typed as one string literal tells a union's variants apart, and says what it
 * is by its value; the variant's own comment (or its union's) says what the variant means.
 */
function isDiscriminant(node: ts.Node): boolean {
  return (
    (ts.isPropertySignature(node) || ts.isPropertyDeclaration(node)) &&
    node.type !== undefined &&
    ts.isLiteralTypeNode(node.type) &&
    ts.isStringLiteral(node.type.literal)
  );
}

function memberName(node: ts.Declaration, symbol: ts.Symbol): string {
  const name = ts.getNameOfDeclaration(node);
  return name !== undefined && ts.isComputedPropertyName(name) ? name.getText() : symbol.name;
}

/**
 * Every exported value and type of `pkg` without TSDoc, and every public member of one: a class's public
 * properties, methods and accessors (static too; the constructor is the class's), an interface's members,
 * the members of an object type an alias or a member spells out inline (`retry?: { maxAttempts?: number }`
 * is an option like any other), an enum's members. Declarations in another package are checked there:
 * a re-export from another workspace package is its home's, a base class from node_modules is not ours.
 * Answers `@floodgate/x: src/file.ts:12 Symbol.member`, in source order.
 */
export function undocumented(program: ts.Program, pkg: WorkspacePackage): string[] {
  const checker = program.getTypeChecker();
  const seen = new Set<ts.Node>();
  const problems: { file: string; pos: number; text: string }[] = [];
  const report = (node: ts.Node, name: string) => {
    if (seen.has(node)) return;
    seen.add(node);
    problems.push({
      file: node.getSourceFile().fileName,
      pos: node.getStart(),
      text: `${where(pkg, node)} ${name}`,
    });
  };

  const checkLiterals = (owner: string, type: ts.TypeNode | undefined) => {
    for (const literal of typeLiterals(type)) {
      for (const member of literal.members) {
        const symbol = member.name === undefined ? undefined : checker.getSymbolAtLocation(member.name);
        if (symbol === undefined || seen.has(member)) continue;
        const name = `${owner}.${memberName(member, symbol)}`;
        if (!isDocumented(checker, symbol, false) && !isDiscriminant(member)) report(member, name);
        seen.add(member);
        if (ts.isPropertySignature(member)) checkLiterals(name, member.type);
      }
    }
  };

  const checkMember = (owner: string, symbol: ts.Symbol) => {
    const declarations = (symbol.declarations ?? []).filter(
      (node) => inPackage(pkg, node) && !isHidden(node),
    );
    const [first] = declarations;
    if (first === undefined || seen.has(first)) return;
    // Named after the class or interface that declares it, so an inherited member is reported once.
    const parent = first.parent;
    const declaring =
      (ts.isClassLike(parent) || ts.isInterfaceDeclaration(parent)) && parent.name !== undefined
        ? parent.name.text
        : owner;
    const name = `${declaring}.${memberName(first, symbol)}`;
    if (!isDocumented(checker, symbol, true) && !isDiscriminant(first)) report(first, name);
    for (const node of declarations) {
      seen.add(node);
      if (ts.isPropertySignature(node) || ts.isPropertyDeclaration(node)) checkLiterals(name, node.type);
    }
  };

  for (const { name, symbol } of publicExports(program, pkg)) {
    const declarations = (symbol.declarations ?? []).filter((node) => inPackage(pkg, node));
    const [first] = declarations;
    if (first === undefined) continue;
    if (!isDocumented(checker, symbol, false)) report(first, name);
    if (symbol.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Interface)) {
      for (const member of checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(symbol)))
        checkMember(name, member);
    }
    if (symbol.flags & ts.SymbolFlags.Class) {
      for (const member of checker.getPropertiesOfType(checker.getTypeOfSymbol(symbol)))
        if (member.name !== 'prototype') checkMember(name, member);
    }
    if (symbol.flags & ts.SymbolFlags.Enum) {
      for (const member of checker.getExportsOfModule(symbol)) checkMember(name, member);
    }
    for (const node of declarations) if (ts.isTypeAliasDeclaration(node)) checkLiterals(name, node.type);
  }
  return problems
    .sort((a, b) => a.file.localeCompare(b.file) || a.pos - b.pos)
    .map((problem) => problem.text);
}

/** `ERR_` and upper snake case: `ERR_RATE_LIMITED`. */
export const ERROR_CODE = /^ERR_[A-Z0-9]+(?:_[A-Z0-9]+)*$/;

/** An exported class that extends `Error`. */
export interface ErrorClass {
  /** The name it is exported under. */
  name: string;
  symbol: ts.Symbol;
  /** The package whose source declares it (a re-exported class is checked there). */
  home: string;
  /**
   * Whether its constructor takes the `code` (a base class such as `TokenBucketError`): its codes are
   * then those each `new X(` in the source passes. Otherwise it has one, read by constructing it.
   */
  takesCode: boolean;
}

/** Whether `symbol` is a class whose prototype chain reaches the global `Error`. */
function isErrorClass(program: ts.Program, symbol: ts.Symbol): boolean {
  if (!(symbol.flags & ts.SymbolFlags.Class)) return false;
  const checker = program.getTypeChecker();
  const reaches = (type: ts.Type): boolean => {
    const target = (type as ts.TypeReference).target ?? type;
    if (!(target.flags & ts.TypeFlags.Object)) return false;
    return (checker.getBaseTypes(target as ts.InterfaceType) ?? []).some((base) => {
      const declaration = base.symbol?.declarations?.[0];
      const fromLib =
        declaration !== undefined && program.isSourceFileDefaultLibrary(declaration.getSourceFile());
      return (fromLib && base.symbol.name === 'Error') || reaches(base);
    });
  };
  return reaches(checker.getDeclaredTypeOfSymbol(symbol));
}

/** The package whose src declares `symbol`, by its manifest name. */
function homeOf(symbol: ts.Symbol, packages: readonly WorkspacePackage[]): string | undefined {
  const declaration = symbol.declarations?.[0];
  return declaration === undefined
    ? undefined
    : packages.find((pkg) => inPackage(pkg, declaration))?.manifest.name;
}

function takesCode(checker: ts.TypeChecker, symbol: ts.Symbol): boolean {
  return checker
    .getSignaturesOfType(checker.getTypeOfSymbol(symbol), ts.SignatureKind.Construct)
    .some((signature) => signature.parameters.some((parameter) => parameter.name === 'code'));
}

/** The error classes `pkg` exports, its own and re-exported ones. */
export function exportedErrorClasses(
  program: ts.Program,
  pkg: WorkspacePackage,
  packages: readonly WorkspacePackage[],
): ErrorClass[] {
  const checker = program.getTypeChecker();
  return publicExports(program, pkg)
    .filter(({ symbol }) => isErrorClass(program, symbol))
    .map(({ name, symbol }) => ({
      name,
      symbol,
      home: homeOf(symbol, packages) ?? '(not a workspace package)',
      takesCode: takesCode(checker, symbol),
    }));
}

/** A `new X(…)` of an error class in a package's source: a `throw`, a rejection, an abort reason. */
export interface ErrorSite {
  /** `@floodgate/x: src/file.ts:12`. */
  at: string;
  /** The class as the source names it. */
  className: string;
  symbol: ts.Symbol;
  /** The `code` argument, for a class whose constructor takes one: its text, or `null` when computed. */
  code: string | null | undefined;
}

/**
 * Every `new X(…)` of an error class declared in a workspace package, in `pkg`'s source. Not only
 * `throw new X(` and `Promise.reject(new X(`: an error made here and thrown, rejected or given as an
 * abort reason elsewhere reaches a caller the same way. The global `Error`s are not classes of the package.
 */
export function errorSites(
  program: ts.Program,
  pkg: WorkspacePackage,
  packages: readonly WorkspacePackage[],
): ErrorSite[] {
  const checker = program.getTypeChecker();
  const sites: ErrorSite[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isNewExpression(node)) {
      let symbol = checker.getSymbolAtLocation(node.expression);
      if (symbol !== undefined && symbol.flags & ts.SymbolFlags.Alias)
        symbol = checker.getAliasedSymbol(symbol);
      if (symbol !== undefined && homeOf(symbol, packages) !== undefined && isErrorClass(program, symbol)) {
        let code: string | null | undefined;
        const signature = checker.getResolvedSignature(node);
        const index = signature?.parameters.findIndex((parameter) => parameter.name === 'code') ?? -1;
        if (index >= 0) {
          const argument = node.arguments?.[index];
          code = argument !== undefined && ts.isStringLiteralLike(argument) ? argument.text : null;
        }
        sites.push({ at: where(pkg, node), className: symbol.name, symbol, code });
      }
    }
    ts.forEachChild(node, visit);
  };
  for (const source of program.getSourceFiles()) if (inPackage(pkg, source)) visit(source);
  return sites;
}

/** A class's nearest ancestor (itself included) that `exported` holds. */
function exportedAncestor(
  checker: ts.TypeChecker,
  symbol: ts.Symbol,
  exported: ReadonlyMap<ts.Symbol, ErrorClass>,
): ErrorClass | undefined {
  for (let type: ts.Type | undefined = checker.getDeclaredTypeOfSymbol(symbol); type !== undefined; ) {
    const found = type.symbol === undefined ? undefined : exported.get(type.symbol);
    if (found !== undefined) return found;
    const target: ts.Type = (type as ts.TypeReference).target ?? type;
    type = checker.getBaseTypes(target as ts.InterfaceType)[0];
  }
  return undefined;
}

/** Error classes that are exceptions to a rule, by package, with the reason a reader needs. */
export interface ErrorExceptions {
  /** Classes whose `code` is chosen at run time on purpose, so some `new X(` passes a computed one. */
  computedCode?: Readonly<Record<string, string>>;
  /** Private subclasses that callers see only as their exported parent (same `code`, `instanceof`). */
  internal?: Readonly<Record<string, string>>;
}

/**
 * The codes each exported error class of `pkg` can carry, and what breaks the rules: a code that is not
 * `ERR_` + upper snake case, a code computed at a `new X(` (a base class such as `BankSimError` must be
 * given a literal), two classes with one code, an error class the source creates but `pkg` does not
 * export. `ownCode` answers the code of a class whose constructor does not take one (read by constructing
 * it). `sitesByPackage` holds the sites of every package, for the codes of a re-exported base class.
 */
export function errorCodes(
  program: ts.Program,
  pkg: WorkspacePackage,
  classes: readonly ErrorClass[],
  sitesByPackage: ReadonlyMap<string, readonly ErrorSite[]>,
  ownCode: (errorClass: ErrorClass) => unknown,
  exceptions: ErrorExceptions = {},
): { codes: Map<ErrorClass, Set<string>>; computed: Set<ErrorClass>; problems: string[] } {
  const checker = program.getTypeChecker();
  const name = pkg.manifest.name;
  const exported = new Map(classes.map((errorClass) => [errorClass.symbol, errorClass]));
  const codes = new Map<ErrorClass, Set<string>>(classes.map((errorClass) => [errorClass, new Set()]));
  const computed = new Set<ErrorClass>();
  const problems: string[] = [];
  for (const errorClass of classes) {
    if (errorClass.takesCode) continue;
    const code = ownCode(errorClass);
    if (typeof code === 'string' && ERROR_CODE.test(code)) codes.get(errorClass)?.add(code);
    else if (errorClass.home === name)
      problems.push(
        `${name}: ${errorClass.name}'s code is ${JSON.stringify(code)}, expected ERR_ + upper snake case`,
      );
  }
  for (const errorClass of classes) {
    if (!errorClass.takesCode) continue;
    for (const site of sitesByPackage.get(errorClass.home) ?? []) {
      const owner = exportedAncestor(checker, site.symbol, exported);
      const internal = exceptions.internal?.[site.className] !== undefined;
      if (owner !== errorClass || (site.symbol !== errorClass.symbol && !internal)) continue;
      const own = errorClass.home === name;
      if (site.code === null) {
        computed.add(errorClass);
        if (own && exceptions.computedCode?.[errorClass.name] === undefined)
          problems.push(`${site.at} new ${site.className}(…) computes its code: pass a literal ERR_… code`);
      } else if (site.code !== undefined && ERROR_CODE.test(site.code)) {
        codes.get(errorClass)?.add(site.code);
      } else if (own) {
        problems.push(
          `${site.at} new ${site.className}(…) has code ${JSON.stringify(site.code)}, expected ERR_ + upper snake case`,
        );
      }
    }
  }
  const byCode = new Map<string, ErrorClass[]>();
  for (const [errorClass, set] of codes)
    for (const code of set) byCode.set(code, [...(byCode.get(code) ?? []), errorClass]);
  for (const [code, owners] of byCode) {
    if (owners.length > 1)
      problems.push(
        `${name}: ${code} is the code of ${owners.map((o) => o.name).join(' and ')}: a code names one class`,
      );
  }
  for (const site of sitesByPackage.get(name) ?? []) {
    if (exported.has(site.symbol)) continue;
    const reason = exceptions.internal?.[site.className];
    if (reason !== undefined && exportedAncestor(checker, site.symbol, exported) !== undefined) continue;
    problems.push(`${site.at} creates a ${site.className}, which ${name} does not export`);
  }
  return { codes, computed, problems };
}

/** One row of a README's errors table. */
export interface ErrorRow {
  /** 1-based line in the README. */
  line: number;
  /** The first `Identifier` in backticks in the first column. */
  className: string | undefined;
  /** The `ERR_…` codes in backticks in the second column (none for a base class's `(base)`). */
  codes: string[];
}

/** The rows of the tables under the README's `## Errors` heading, or `undefined` when it has none. */
export function readmeErrorRows(markdown: string): ErrorRow[] | undefined {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => /^##\s+Errors\s*$/i.test(line));
  if (start < 0) return undefined;
  const rows: ErrorRow[] = [];
  for (let index = start + 1; index < lines.length; index++) {
    const line = lines[index] as string;
    if (/^#{1,2}\s/.test(line)) break;
    if (!line.startsWith('|') || /^\|[\s:|-]+\|?\s*$/.test(line)) continue;
    const [, first = '', second = ''] = line.split(/(?<!\\)\|/);
    const className = /`([A-Za-z_$][\w$]*)`/.exec(first)?.[1];
    rows.push({
      line: index + 1,
      className,
      codes: [...second.matchAll(/`(ERR_[A-Z0-9_]+)`/g)].map((m) => m[1] as string),
    });
  }
  // The header row names the columns, not a class.
  return rows.filter((row, index) => index > 0 || row.className !== undefined);
}

/**
 * The README's errors table against the code: each exported error class has a row and each of its codes
 * is in one of its rows; each row names an exported error class and only codes it has. A class in
 * `computed` also has codes chosen at run time (`AttemptError`'s transport codes), so its row may name
 * those too.
 */
export function readmeErrorProblems(
  pkg: WorkspacePackage,
  rows: readonly ErrorRow[] | undefined,
  codes: ReadonlyMap<ErrorClass, ReadonlySet<string>>,
  computed: ReadonlySet<ErrorClass> = new Set(),
): string[] {
  const readme = `${pkg.manifest.name}: README.md`;
  if (rows === undefined)
    return codes.size === 0 ? [] : [`${readme} has no "## Errors" section with a table of its error classes`];
  const problems: string[] = [];
  for (const [errorClass, set] of codes) {
    const mine = rows.filter((row) => row.className === errorClass.name);
    if (mine.length === 0) {
      const listed = set.size === 0 ? '' : ` (${[...set].join(', ')})`;
      problems.push(`${readme}: ${errorClass.name}${listed} is not in the errors table`);
      continue;
    }
    const listed = new Set(mine.flatMap((row) => row.codes));
    for (const code of set)
      if (!listed.has(code))
        problems.push(`${readme}: ${code} of ${errorClass.name} is not in the errors table`);
  }
  for (const row of rows) {
    const errorClass = [...codes.keys()].find((candidate) => candidate.name === row.className);
    if (errorClass === undefined) {
      problems.push(
        `${readme}:${row.line} lists ${row.className ?? 'a row without a class'}, which is not an exported error class`,
      );
      continue;
    }
    if (computed.has(errorClass)) continue;
    for (const code of row.codes)
      if (!codes.get(errorClass)?.has(code))
        problems.push(`${readme}:${row.line} lists ${code} for ${errorClass.name}, which never has it`);
  }
  return problems;
}
