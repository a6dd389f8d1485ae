import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import type { AuthEvent } from '../lib/index.js'

/*
 * The package as users get it: `npm pack`, then three throwaway projects (ESM
 * JavaScript, CommonJS, TypeScript NodeNext) install the tarball from the npm
 * cache next to express, passport and passport-local, run a real login app and
 * print the events they received. Nothing here imports lib/ at runtime, so a
 * broken `exports` map, a missing dist file or a bad .d.ts shows up here only.
 */

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const fixtures = join(root, 'spec', 'fixtures', 'packaging')

// npm run from `npm test` passes its own npm_* variables down (local prefix, package
// paths); the nested installs must behave as in a fresh shell inside the temp project.
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')))

const exec = async (command: string, args: string[], cwd: string): Promise<string> => {
  try {
    const { stdout } = await run(command, args, { cwd, env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 })
    return stdout
  } catch (err) {
    // Surface the tool's own output (tsc prints its errors on stdout) in the failure.
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string }
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd}\n${stdout}\n${stderr}`)
  }
}

const files = async (dir: string): Promise<string[]> => {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))
}

/**
 * `npm test` builds dist/ just before the specs run, and other spec files load it
 * concurrently; re-running the prepack build (`rm -rf dist && tsc`) would pull it
 * from under them. So pack with `--ignore-scripts` when dist/ is newer than every
 * input, and let prepack build it otherwise (run on its own, or after an edit).
 */
const distIsFresh = async (): Promise<boolean> => {
  const outputs = await files(join(root, 'dist'))
  if (!outputs.some((f) => f.endsWith('index.js')) || !outputs.some((f) => f.endsWith('index.d.ts'))) return false
  const inputs = [...(await files(join(root, 'lib'))), join(root, 'tsconfig.json'), join(root, 'tsconfig.build.json')]
  const mtimes = async (paths: string[]) => Promise.all(paths.map(async (p) => (await stat(p)).mtimeMs))
  return Math.min(...(await mtimes(outputs))) >= Math.max(...(await mtimes(inputs)))
}

interface PackResult {
  filename: string
  files: { path: string }[]
}

interface FixtureOutput {
  statuses: number[]
  events: AuthEvent[]
  exports?: string[]
  hasDefault?: boolean
  resolved?: string
  requireModule?: boolean
  anon: string
}

const rootManifest = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>
  devDependencies: Record<string, string>
}
// The ranges the repository itself is locked to, so --prefer-offline hits the warm cache.
const dep = (name: string): string => {
  const range = rootManifest.devDependencies[name]
  assert.ok(range, `${name} is not a devDependency of the repository`)
  return `${name}@${range}`
}

const lastJsonLine = (stdout: string): FixtureOutput => {
  const line = stdout.trim().split('\n').at(-1) ?? ''
  try {
    return JSON.parse(line) as FixtureOutput
  } catch {
    throw new Error(`fixture printed no JSON result:\n${stdout}`)
  }
}

/** The two logins every fixture performs, as the package must report them. */
const assertLogins = (out: FixtureOutput): void => {
  assert.deepEqual(out.statuses, [200, 401], 'the app itself answered the logins as passport-local decides')
  assert.equal(out.events.length, 2, JSON.stringify(out.events.map((e) => e.type)))
  const succeeded = out.events.find((e) => e.type === 'login.succeeded')
  const failed = out.events.find((e) => e.type === 'login.failed')
  assert.ok(succeeded && failed, JSON.stringify(out.events.map((e) => e.type)))
  assert.deepEqual(
    {
      source: succeeded.source,
      mode: succeeded.mode,
      strategy: succeeded.strategy,
      identity: succeeded.identity,
      userKey: succeeded.userKey,
      status: succeeded.status,
    },
    {
      source: 'passport',
      mode: 'automatic',
      strategy: 'local',
      identity: { id: 1, username: 'alice' },
      userKey: 'id:1',
      status: 200,
    },
  )
  assert.deepEqual(
    {
      source: failed.source,
      strategy: failed.strategy,
      reason: failed.reason,
      identity: failed.identity,
      status: failed.status,
    },
    {
      source: 'passport',
      strategy: 'local',
      reason: 'invalid_credentials',
      identity: { login: 'mallory' },
      status: 401,
    },
  )
}

const assertNamedExportsOnly = (out: FixtureOutput): void => {
  for (const name of ['sqreenAuth', 'anonEmail', 'SqreenAuthError']) {
    assert.ok(out.exports?.includes(name), `missing export ${name}: ${JSON.stringify(out.exports)}`)
  }
  assert.equal(out.hasDefault, false, 'the package must have named exports only')
}

describe('packaging: the npm tarball in fresh projects', { timeout: 120_000 }, () => {
  let work = ''
  let pack: PackResult
  const installs = new Map<'esm' | 'cjs' | 'ts', Promise<string>>()

  /** A temp project with the tarball and `extra` installed; resolves to its (real) path. */
  const project = async (name: string, type: 'module' | 'commonjs', extra: string[]): Promise<string> => {
    const dir = join(work, name)
    await mkdir(dir)
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${name}`, private: true, type }))
    await exec(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        join(work, pack.filename),
        dep('express'),
        dep('passport'),
        dep('passport-local'),
        ...extra,
      ],
      dir,
    )
    return realpath(dir)
  }

  before(
    async () => {
      work = await mkdtemp(join(tmpdir(), 'sqreen-auth-pack-'))
      const args = ['pack', '--json', '--pack-destination', work]
      if (await distIsFresh()) args.push('--ignore-scripts')
      // The nodedir warnings of npm 11 and the prepack output go to stderr; stdout is the JSON report.
      const [report] = JSON.parse(await exec('npm', args, root)) as [PackResult]
      pack = report

      // The three installs are independent: run them together, await each in its test.
      const start = (key: 'esm' | 'cjs' | 'ts', p: Promise<string>) => {
        p.catch(() => {}) // reported by the test that awaits it
        installs.set(key, p)
      }
      start('esm', project('esm', 'module', []))
      start('cjs', project('cjs', 'commonjs', []))
      start(
        'ts',
        project('ts', 'module', [
          dep('@types/express'),
          dep('@types/passport'),
          dep('@types/passport-local'),
          dep('@types/node'),
        ]),
      )
    },
    { timeout: 60_000 },
  )

  after(async () => {
    await Promise.allSettled(installs.values())
    if (work) await rm(work, { recursive: true, force: true })
  })

  it('ships the built package and nothing of the repository', async () => {
    const paths = pack.files.map((f) => f.path)
    for (const required of ['package.json', 'dist/index.js', 'dist/index.d.ts']) {
      assert.ok(paths.includes(required), `${required} is missing from the tarball`)
    }
    const readme = await stat(join(root, 'README.md')).then(
      () => true,
      () => false,
    )
    assert.equal(paths.includes('README.md'), readme, 'README.md is shipped exactly when the repository has one')
    const strays = paths.filter(
      (p) =>
        /^(spec|lib|bench|demo-app|node_modules|\.ci|\.tmp)\//.test(p) ||
        (p.endsWith('.ts') && !p.endsWith('.d.ts')) ||
        p.endsWith('.tgz') ||
        !/^(dist\/|package\.json$|README\.md$|LICEN[CS]E|CHANGELOG\.md$)/.test(p),
    )
    assert.deepEqual(strays, [], 'only dist/ and package metadata belong in the tarball')

    // Every entry point the manifest names must be in the tarball.
    const manifest = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
      main: string
      types: string
      exports: Record<string, string | Record<string, string>>
    }
    const exportTargets = Object.values(manifest.exports).flatMap((t) =>
      typeof t === 'string' ? [t] : Object.values(t),
    )
    for (const target of [manifest.main, manifest.types, ...exportTargets]) {
      assert.ok(paths.includes(target.replace(/^\.\//, '')), `${target} is named by package.json but not shipped`)
    }
    // A published tarball is always built from the current sources.
    assert.match(rootManifest.scripts.prepack ?? '', /\bbuild\b/)
  })

  it('works from an ESM JavaScript project (named imports)', async () => {
    const dir = await installs.get('esm')!
    await copyFile(join(fixtures, 'esm', 'app.mjs'), join(dir, 'app.mjs'))
    const out = lastJsonLine(await exec(process.execPath, ['app.mjs'], dir))
    assertLogins(out)
    assertNamedExportsOnly(out)
    assert.equal(out.resolved, pathToFileURL(join(dir, 'node_modules/sqreen-auth/dist/index.js')).href)
    assert.equal(out.anon, 'anon-42@example.com')
  })

  it('works from a CommonJS project through require(esm)', async () => {
    // Node >= 20.19 (the engines floor) loads ESM with require(); no skip on older Nodes.
    assert.equal(process.features.require_module, true, 'this Node cannot require() ES modules')
    const dir = await installs.get('cjs')!
    await copyFile(join(fixtures, 'cjs', 'app.cjs'), join(dir, 'app.cjs'))
    const out = lastJsonLine(await exec(process.execPath, ['app.cjs'], dir))
    assert.equal(out.requireModule, true)
    assertLogins(out)
    assertNamedExportsOnly(out)
    assert.equal(out.resolved, join(dir, 'node_modules/sqreen-auth/dist/index.js'))
  })

  it('type-checks and works from a TypeScript NodeNext project', async () => {
    const dir = await installs.get('ts')!
    await mkdir(join(dir, 'src'))
    await copyFile(join(fixtures, 'ts', 'app.ts.txt'), join(dir, 'src', 'app.ts'))
    await copyFile(join(fixtures, 'ts', 'tsconfig.json'), join(dir, 'tsconfig.json'))
    // Fails on any tsc diagnostic, including in the shipped .d.ts (skipLibCheck is off) and
    // the fixture's @ts-expect-error on a default import (named exports only).
    await exec(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], dir)
    const out = lastJsonLine(await exec(process.execPath, ['dist/app.js'], dir))
    assertLogins(out)
    assert.equal(out.anon, 'anon-u-7@example.org')
  })
})
