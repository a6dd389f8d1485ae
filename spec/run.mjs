#!/usr/bin/env node
// The one test command (`npm test`, also what .ci/run calls): type-check, lint,
// build the package (the packaging and CommonJS specs use dist/), then run every
// spec with Node's own test runner. `npm test -- spec/foo.spec.ts` runs a subset.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const bin = (name) => join(root, 'node_modules', '.bin', name)

const step = (title, command, args) => {
  console.log(`\n> ${title}`)
  const { status } = spawnSync(command, args, { cwd: root, stdio: 'inherit' })
  if (status !== 0) {
    console.error(`\n${title} failed (exit ${status})`)
    process.exit(status ?? 1)
  }
}

const specs = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return entry.name === 'helpers' || entry.name === 'artifacts' ? [] : specs(path)
    return entry.name.endsWith('.spec.ts') ? [relative(root, path)] : []
  })

const selected = process.argv.slice(2)
if (selected.length === 0) {
  step('type-check', bin('tsc'), ['-p', 'tsconfig.json'])
  step('lint and format check', bin('biome'), ['check', '.'])
}
step('build', 'npm', ['run', '--silent', 'build'])
const files = selected.length > 0 ? selected : specs(join(root, 'spec')).sort()
step(`${files.length} spec files`, process.execPath, [
  '--import',
  'tsx',
  '--test',
  '--test-reporter=spec',
  '--test-concurrency=2',
  ...files,
])
