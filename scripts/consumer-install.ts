// Installs what we publish the way a consumer does, and uses it. After `pnpm build`:
//
//   pnpm check:consumer          # KEEP=1 keeps the throwaway project (its path is printed)
//
// Packs every package (pnpm rewrites `workspace:` ranges to versions), installs the tarballs into a
// throwaway project outside the repo, and there, against node_modules and not the workspace source:
//   (a) imports each package as ESM and requires it as CommonJS, and compares the names they export;
//   (b) runs each package README's example (scripts/readme-example.ts finds it) with the repo's tsx: an
//       example that ends must exit 0 and print nothing on stderr; a server example (port 3000, moved to a
//       free port) must answer GET / without a 5xx;
//   (c) type-checks a file importing every package, with `moduleResolution` node16 (ESM and CommonJS) and
//       bundler, and `skipLibCheck: false`, so what our .d.ts import must come with the install.
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { workspacePackages } from './package-dependencies.js';
import { forkExample, readmeExample } from './readme-example.js';

const repo = fileURLToPath(new URL('../', import.meta.url));
const requireFromRepo = createRequire(import.meta.url);
/** Moves a server example off port 3000 and reports its port over IPC (as the repo's README test does). */
const MOVE_PORT_PRELOAD = new URL('./readme-example-port.ts', import.meta.url).href;
const tsc = requireFromRepo.resolve('typescript/bin/tsc');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Per README example: a cold tsx start on a loaded 2-core CI machine, then the example's own work. */
const EXAMPLE_TIMEOUT_MS = 30_000;
const started = performance.now();

function log(message: string): void {
  const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(5);
  process.stdout.write(`consumer [${seconds} s] ${message}\n`);
}

interface Output {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end and answers its exit code and output. */
function output(command: string, args: readonly string[], cwd: string): Promise<Output> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a command to its end; rejects with its output unless it exits 0. */
async function run(command: string, args: readonly string[], cwd: string): Promise<Output> {
  const result = await output(command, args, cwd);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.code} in ${cwd}\n${result.stdout}${result.stderr}`,
    );
  }
  return result;
}

const packages = workspacePackages().filter((pkg) => pkg.manifest.private !== true);
const names = packages.map((pkg) => pkg.manifest.name);
for (const pkg of packages) {
  if (!existsSync(join(pkg.root, 'dist'))) {
    throw new Error(`${pkg.manifest.name} has no dist/: run pnpm build first`);
  }
}

/**
 * The throwaway project: every tarball as a `file:` dependency, and as an override so the tarballs'
 * dependencies on each other (`^0.1.0` once packed) resolve to them instead of the registry; the peers the
 * packages declare, with the @types the workspace types them with (the consumer's to install: see
 * package-dependencies.ts); @types/node as the workspace pins it.
 */
async function consumerManifest(tarballs: string, sqliteToReuse: SqliteBuild | undefined): Promise<object> {
  const own: Record<string, string> = {};
  const peers: Record<string, string> = {};
  for (const { manifest } of packages) {
    const file = `${manifest.name.replace(/^@/, '').replace('/', '-')}-${manifest.version}.tgz`;
    if (!existsSync(join(tarballs, file))) throw new Error(`pnpm pack made no ${file}`);
    own[manifest.name] = `file:../tarballs/${file}`;
    for (const [peer, range] of Object.entries(manifest.peerDependencies ?? {})) {
      if (names.includes(peer)) continue;
      peers[peer] = range;
      const types = `@types/${peer.replace(/^@(.*)\/(.*)$/, '$1__$2')}`;
      const typesRange = manifest.devDependencies?.[types];
      if (typesRange !== undefined) peers[types] = typesRange;
    }
  }
  const root = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as {
    devDependencies: Record<string, string>;
  };
  const overrides: Record<string, string> = { ...own };
  if (sqliteToReuse !== undefined) overrides['better-sqlite3'] = sqliteToReuse.version;
  return {
    name: 'floodgate-consumer',
    private: true,
    type: 'module',
    dependencies: { ...own, ...peers, '@types/node': root.devDependencies['@types/node'] },
    pnpm: { overrides, onlyBuiltDependencies: sqliteToReuse === undefined ? ['better-sqlite3'] : [] },
  };
}

interface SqliteBuild {
  version: string;
  /** The compiled `better_sqlite3.node`. */
  binding: string;
}

/** The workspace's better-sqlite3 (payment-retry's) and its compiled binding for this Node, if built. */
function workspaceSqlite(): SqliteBuild | undefined {
  const payment = packages.find((pkg) => pkg.manifest.name === '@floodgate/payment-retry');
  if (payment === undefined) return undefined;
  try {
    const dir = dirname(
      createRequire(join(payment.root, 'package.json')).resolve('better-sqlite3/package.json'),
    );
    const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
    const binding = join(dir, 'build', 'Release', 'better_sqlite3.node');
    return existsSync(binding) ? { version, binding } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Gives the consumer's better-sqlite3 the workspace's build of the same version for the same Node (pnpm
 * was told not to build it), so the install takes seconds.
 */
async function provideSqliteBinding(consumer: string, sqlite: SqliteBuild): Promise<void> {
  const payment = realpathSync(join(consumer, 'node_modules', '@floodgate', 'payment-retry'));
  const dir = dirname(createRequire(join(payment, 'package.json')).resolve('better-sqlite3/package.json'));
  const { version } = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { version: string };
  if (version !== sqlite.version) {
    throw new Error(`better-sqlite3 ${version} installed, ${sqlite.version} overridden`);
  }
  mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
  copyFileSync(sqlite.binding, join(dir, 'build', 'Release', 'better_sqlite3.node'));
  log(`better-sqlite3 ${version}: reusing the workspace's build for Node ${process.versions.node}`);
}

/** Run by Node in the consumer with the package names as arguments. */
const EXPORTS_CHECK = `import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let failed = false;
for (const name of process.argv.slice(2)) {
  try {
    const esm = Object.keys(await import(name)).filter((key) => key !== 'default').sort();
    const cjs = Object.keys(require(name)).filter((key) => key !== '__esModule').sort();
    const onlyEsm = esm.filter((key) => !cjs.includes(key));
    const onlyCjs = cjs.filter((key) => !esm.includes(key));
    if (esm.length === 0 || onlyEsm.length > 0 || onlyCjs.length > 0) {
      failed = true;
      console.log(name + ': ESM exports ' + esm.length + ', CommonJS ' + cjs.length +
        '; only in ESM: ' + (onlyEsm.join(', ') || '-') + '; only in CommonJS: ' + (onlyCjs.join(', ') || '-'));
    } else {
      console.log(name + ': ' + esm.length + ' names, the same from import and require');
    }
  } catch (error) {
    failed = true;
    console.log(name + ': ' + (error?.stack ?? error));
  }
}
process.exitCode = failed ? 1 : 0;
`;

/**
 * Preloaded into each README example: a server asked for port 3000 listens on a free port instead, and
 * tells the parent which (the repo's preload also insists on workspace source, the opposite of here).
 */

/** Whether something accepts TCP connections at the Redis URL. */
function redisReachable(): Promise<boolean> {
  const { hostname, port } = new URL(REDIS_URL);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname || '127.0.0.1', port: Number(port || 6379) });
    socket.setTimeout(1_000);
    socket.once('connect', () => resolve(true));
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => resolve(false));
    socket.once('close', () => socket.destroy());
    socket.once('connect', () => socket.end());
  });
}

/** GET / on the example's server; answers the status and the RateLimit-Policy field, if any. */
function get(port: number): Promise<{ status: number; policy: string | undefined }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      const policy = res.headers['ratelimit-policy'];
      res.on('end', () => resolve({ status: res.statusCode ?? 0, policy: policy?.toString() }));
    })
      .on('error', reject)
      .end();
  });
}

/** Runs one README example in the consumer; answers why it failed, or `undefined`. */
async function runReadmeExample(consumer: string, dir: string, name: string): Promise<string | undefined> {
  const example = await readmeExample(dir);
  let code = example.code;
  if (code.includes('@floodgate/redis')) {
    if (!(await redisReachable())) {
      if (process.env.FLOODGATE_REQUIRE_REDIS === '1')
        return `needs Redis, and nothing answers at ${REDIS_URL}`;
      log(`  ${name}: SKIPPED, it needs Redis and nothing answers at ${REDIS_URL}`);
      return undefined;
    }
    // The Redis CI names, and a prefix of its own: the repo's README test counts this example's keys.
    code = code
      .replaceAll("'redis://127.0.0.1:6379'", JSON.stringify(REDIS_URL))
      .replace(/prefix: '[^']*'/, `prefix: 'floodgate-consumer:${process.pid}:'`);
  }
  const file = join(consumer, `readme-${dir}.${example.lang === 'ts' ? 'mts' : 'mjs'}`);
  await writeFile(file, code);
  // tsx reads a tsconfig in the cwd (the consumer has none), not the repo's that a caller may name. The
  // preload only moves a server off port 3000; it does not touch module resolution.
  const {
    child,
    stdout: printedOut,
    stderr: printedErr,
  } = forkExample(file, {
    cwd: consumer,
    preload: MOVE_PORT_PRELOAD,
    env: { ...process.env, TSX_TSCONFIG_PATH: undefined },
  });
  const outcome = await exampleOutcome(child);
  const stdout = printedOut();
  const stderr = printedErr();
  const printed = `\nstdout:\n${stdout}stderr:\n${stderr}`;
  if (outcome.kind === 'exited') {
    if (outcome.code !== 0 || stderr !== '') return `exited ${outcome.code}${printed}`;
    log(`  ${name}: ended by itself, exit 0: ${stdout.trim().split('\n').join(' | ').slice(0, 120)}`);
    return undefined;
  }
  if (outcome.kind === 'timeout')
    return `neither ended nor listened within ${EXAMPLE_TIMEOUT_MS} ms${printed}`;
  try {
    const { status, policy } = await get(outcome.port);
    if (status >= 500) return `its server answered GET / with ${status}${printed}`;
    log(
      `  ${name}: a server; GET / answered ${status}${policy === undefined ? '' : `, RateLimit-Policy ${policy}`}`,
    );
    return undefined;
  } catch (error) {
    return `its server did not answer GET /: ${(error as Error).message}${printed}`;
  } finally {
    const exited = new Promise((resolve) => child.once('close', resolve));
    child.kill('SIGTERM');
    await exited;
  }
}

type Outcome =
  | { kind: 'exited'; code: number | null }
  | { kind: 'listening'; port: number }
  | { kind: 'timeout' };

/** Whichever comes first: the example exits, it listens, or the time is up (it is then killed). */
function exampleOutcome(child: ChildProcess): Promise<Outcome> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ kind: 'timeout' });
    }, EXAMPLE_TIMEOUT_MS);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ kind: 'exited', code });
    });
    child.on('message', (message: { type?: string; port?: number }) => {
      if (message.type === 'listening' && message.port !== undefined) {
        clearTimeout(timer);
        resolve({ kind: 'listening', port: message.port });
      }
    });
  });
}

/** types/esm.ts and types/cjs.cts import every package; a tsconfig per resolution mode checks them. */
async function writeTypeCheckProject(consumer: string): Promise<void> {
  const types = join(consumer, 'types');
  await mkdir(types);
  const identifiers = names.map((_, index) => `package${index}`);
  const imports = names.map((name, index) => `import * as ${identifiers[index]} from '${name}';`).join('\n');
  const body = `${imports}\n\nexport const packages: readonly object[] = [${identifiers.join(', ')}];\n`;
  await writeFile(join(types, 'esm.ts'), body);
  await writeFile(join(types, 'cjs.cts'), body);
  const base = { strict: true, noEmit: true, skipLibCheck: false, types: ['node'], target: 'ES2022' };
  const configs = {
    'tsconfig.node16.json': {
      compilerOptions: { ...base, module: 'node16', moduleResolution: 'node16' },
      files: ['types/esm.ts', 'types/cjs.cts'],
    },
    'tsconfig.bundler.json': {
      compilerOptions: { ...base, module: 'esnext', moduleResolution: 'bundler' },
      files: ['types/esm.ts'],
    },
  };
  for (const [file, config] of Object.entries(configs)) {
    await writeFile(join(consumer, file), JSON.stringify(config, null, 2));
  }
}

async function main(): Promise<void> {
  const temp = await mkdtemp(join(tmpdir(), 'floodgate-consumer-'));
  // Inside the repo, pnpm would join the workspace and Node would find the repo's node_modules.
  if (`${realpathSync(temp)}${sep}`.startsWith(realpathSync(repo))) {
    throw new Error(`the temporary directory ${temp} is inside the repo: set TMPDIR elsewhere`);
  }
  function cleanUp(): void {
    if (process.env.KEEP === '1') log(`kept ${temp}`);
    else rmSync(temp, { recursive: true, force: true });
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanUp();
      process.exit(130);
    });
  }

  // better-sqlite3 13 needs Node 22, and pnpm takes the highest version `^12.6.2 || ^13.2.0` allows whatever
  // the Node (npm does not); the payment-retry README tells pnpm users on Node 20 to override it to 12, done
  // here with the workspace's own 12, whose build is reused: compiling it takes ~70 s on 2 cores, and it is
  // not our code. On Node 22+ the consumer gets 13 and pnpm builds it (or takes it from its side-effects cache).
  const sqliteToReuse = Number.parseInt(process.versions.node, 10) < 22 ? workspaceSqlite() : undefined;

  const failures: string[] = [];
  try {
    const tarballs = join(temp, 'tarballs');
    const consumer = join(temp, 'consumer');
    await mkdir(consumer);
    log(`packing ${names.length} packages into ${tarballs}`);
    await run(
      'npx',
      ['-y', 'pnpm@10', '-r', '--filter', './packages/**', 'pack', '--pack-destination', tarballs],
      repo,
    );

    await writeFile(
      join(consumer, 'package.json'),
      JSON.stringify(await consumerManifest(tarballs, sqliteToReuse), null, 2),
    );
    log('installing the tarballs, their peers and @types/node with pnpm');
    // No lockfile here: under CI=true pnpm would insist on a frozen one.
    await run(
      'npx',
      ['-y', 'pnpm@10', 'install', '--no-frozen-lockfile', '--config.strict-peer-dependencies=true'],
      consumer,
    );
    if (sqliteToReuse !== undefined) await provideSqliteBinding(consumer, sqliteToReuse);

    log('(a) import (ESM) and require (CommonJS) export the same names');
    await writeFile(join(consumer, 'exports.mjs'), EXPORTS_CHECK);
    const exportsCheck = await output(process.execPath, ['exports.mjs', ...names], consumer);
    process.stdout.write(`${exportsCheck.stdout}${exportsCheck.stderr}`.replace(/^(?=.)/gm, '  '));
    if (exportsCheck.code !== 0) failures.push('(a) ESM and CommonJS exports differ or fail to load (above)');

    log('(b) README examples against the installed packages');
    for (const pkg of packages) {
      const failure = await runReadmeExample(consumer, pkg.dir, pkg.manifest.name);
      if (failure !== undefined) failures.push(`(b) ${pkg.manifest.name} README example: ${failure}`);
    }

    log('(c) type-check a consumer file: node16 (ESM + CommonJS) and bundler, skipLibCheck false');
    await writeTypeCheckProject(consumer);
    // One tsc per core: each spends ~15 s checking every .d.ts the imports reach.
    const configs = ['tsconfig.node16.json', 'tsconfig.bundler.json'];
    const checks = await Promise.all(
      configs.map((config) => output(process.execPath, [tsc, '-p', config], consumer)),
    );
    checks.forEach((check, index) => {
      if (check.code === 0) log(`  ${configs[index]}: no errors`);
      else failures.push(`(c) ${configs[index]}:\n${check.stdout}${check.stderr}`);
    });

    log('(d) every command the packages declare (`bin`) runs from node_modules/.bin: --help');
    for (const pkg of packages) {
      const bins = typeof pkg.manifest.bin === 'string' ? { [pkg.dir]: pkg.manifest.bin } : pkg.manifest.bin;
      for (const command of Object.keys(bins ?? {})) {
        const help = await output(
          join(consumer, 'node_modules', '.bin', command),
          ['--help'],
          consumer,
        ).catch((error: unknown): Output => ({ code: null, stdout: '', stderr: String(error) }));
        if (help.code === 0 && help.stdout.includes(`Usage: ${command}`)) log(`  ${command} --help: usage`);
        else failures.push(`(d) ${command} --help exited ${help.code}:\n${help.stdout}${help.stderr}`);
      }
    }
  } finally {
    cleanUp();
  }

  if (failures.length > 0) {
    process.stderr.write(`\nconsumer: ${failures.length} failed\n\n${failures.join('\n\n')}\n`);
    process.exit(1);
  }
  log('all good');
}

await main();
