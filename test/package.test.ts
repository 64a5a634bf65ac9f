/**
 * The package as another project installs it: `npm pack` builds compiled JavaScript with
 * declarations; installed into a fresh project (offline, from npm's cache), it runs a job from a
 * plain `.mjs`, a TypeScript consumer type-checks against it with no special compiler options,
 * and its `weir` command runs a TypeScript job file.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))

interface Ran {
  status: number | null
  stdout: string
  stderr: string
}

function sh(file: string, args: string[], cwd: string): Promise<Ran> {
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_update_notifier: 'false' }
  delete env.NODE_OPTIONS
  // npm, tsc and the installed dist/ are outside what coverage measures: do not slow them with it.
  delete env.NODE_V8_COVERAGE
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
    })
  })
}

interface LockEntry {
  version?: string
  resolved?: string
  integrity?: string
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  dev?: boolean
  devOptional?: boolean
  [field: string]: unknown
}

/**
 * A lockfile for a project that depends on the tarball only: the tarball's dependencies at the
 * very versions (and integrity) this repository's lockfile has, so `npm ci --offline` takes them
 * from npm's cache, where this repository's own install put them.
 */
function consumerLock(tarball: string, manifest: { name: string; version: string; dependencies: Record<string, string>; bin: Record<string, string> }): object {
  const repoLock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }
  const packages: Record<string, LockEntry> = {}
  // Node's resolution over lockfile paths: the nearest node_modules/<name> up from `from`.
  const locate = (from: string, name: string): string | undefined => {
    let dir = from
    for (;;) {
      const candidate = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`
      if (repoLock.packages[candidate] !== undefined) return candidate
      if (dir === '') return undefined
      const at = dir.lastIndexOf('/node_modules/')
      dir = at < 0 ? '' : dir.slice(0, at)
    }
  }
  const visit = (from: string, deps: Record<string, string>, optional: boolean) => {
    for (const name of Object.keys(deps)) {
      const path = locate(from, name)
      if (path === undefined) {
        if (optional) continue
        throw new Error(`package-lock.json has no ${name} for ${from || 'the root'}`)
      }
      if (packages[path] !== undefined) continue
      const { dev: _dev, devOptional: _devOptional, ...entry } = repoLock.packages[path]!
      packages[path] = entry
      visit(path, entry.dependencies ?? {}, false)
      visit(path, entry.optionalDependencies ?? {}, true)
    }
  }
  visit('', manifest.dependencies, false)
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`
  return {
    name: 'consumer',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'consumer', dependencies: { weir: `file:${tarball}` } },
      'node_modules/weir': {
        version: manifest.version,
        resolved: `file:${tarball}`,
        integrity,
        license: 'Apache-2.0',
        dependencies: manifest.dependencies,
        bin: manifest.bin,
        engines: { node: '>=20' },
      },
      ...packages,
    },
  }
}

const JS_CONSUMER = `import { job, valueState, generatorSource, arraySink, runJob, EmbeddedStore, readSnapshotState } from 'weir'
import { ManualClock, testJob } from 'weir/testing'

const count = valueState('count', { default: 0 })
const counts = job('plain-js')
  .source('in', generatorSource({ records: 1000, keys: 10 }))
  .keyBy((r) => r.key)
  .process('count', { state: { count } }, (r, ctx) => {
    const c = ctx.state(count)
    c.update(c.value() + 1)
  })
  .sink('out', arraySink([]))
const store = new EmbeddedStore({ dir: 'snapshots' })
const result = await runJob(counts, { store, checkpoints: { intervalMs: 1000 }, logLevel: 'silent' })
const state = await readSnapshotState(store, 'plain-js', 'count', 'count')
await store.close()
// The test kit of the package subpath runs the same job again.
const run = await testJob(counts, { clock: new ManualClock(0) })
if (run.state('count', count).size !== state.size) throw new Error('weir/testing saw other state')
console.log(JSON.stringify({ status: result.status, keys: state.size, total: [...state.values()].reduce((a, b) => a + b, 0) }))
`

const TS_CONSUMER = `import { job, valueState, generatorSource, stdoutSink, runJob, type RunOptions, type ExecutorTuning, type JobResult } from 'weir'

const count = valueState<number>('count', { default: 0 })
const tuning: ExecutorTuning = { batchSize: 256, channelCapacity: 4, sliceMs: 5 }
const options: RunOptions = { checkpoints: { intervalMs: 100 }, tuning, logLevel: 'silent' }
export const counts = job('typed')
  .source('in', generatorSource({ records: 100, keys: 3 }))
  .keyBy((r) => r.key)
  .process('count', { state: { count } }, (r, ctx) => {
    const c = ctx.state(count)
    c.update(c.value() + r.value)
    // @ts-expect-error the state holds numbers, as declared
    c.update('one')
    ctx.emit({ key: ctx.key, count: c.value() })
  })
  .sink('out', stdoutSink())
export const run = (): Promise<JobResult> => runJob(counts, options)
`

// A job file for the installed \`weir\` command: TypeScript, importing the package by name.
const JOB_FILE = `import { job, valueState, generatorSource, stdoutSink } from 'weir'

const count = valueState<number>('count', { default: 0 })
export default job('cli-job')
  .source('in', generatorSource({ records: 300, keys: 3 }))
  .keyBy((r) => r.key)
  .process('count', { state: { count } }, (r, ctx) => {
    const c = ctx.state(count)
    c.update(c.value() + 1)
    ctx.emit({ key: ctx.key, count: c.value() })
  })
  .sink('out', stdoutSink())
`

t.test('package - packed and installed, it runs from plain JavaScript, type-checks from TypeScript, and its weir runs a .ts job', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-package-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))

  const pack = await sh('npm', ['pack', '--json', '--pack-destination', dir], root)
  t.equal(pack.status, 0, `npm pack builds and packs${pack.status === 0 ? '' : `: ${pack.stderr}`}`)
  const [packed] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[]
  const files = packed!.files.map((f) => f.path)
  t.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('dist/cli/main.js') && files.includes('bin/weir.js'), 'ships compiled JavaScript, declarations and the command')
  t.same(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), [], 'ships no TypeScript sources')
  t.same(files.filter((f) => f.startsWith('test/') || f.startsWith('dist/test/')), [], 'ships no tests')

  const tarball = join(dir, packed!.filename)
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Parameters<typeof consumerLock>[1] & { overrides: Record<string, string> }
  const project = join(dir, 'consumer')
  mkdirSync(project)
  // This repository pins cbor-x's optional native decoder (its `overrides`); the consumer takes the same pin.
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { weir: `file:${tarball}` }, overrides: manifest.overrides }))
  writeFileSync(join(project, 'package-lock.json'), JSON.stringify(consumerLock(tarball, manifest), null, 2))
  const install = await sh('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], project)
  t.equal(install.status, 0, `installs offline${install.status === 0 ? '' : `: ${install.stderr}`}`)

  writeFileSync(join(project, 'main.mjs'), JS_CONSUMER)
  const js = await sh(process.execPath, ['main.mjs'], project)
  t.equal(js.status, 0, `a plain .mjs imports weir and runs a job${js.status === 0 ? '' : `: ${js.stderr}`}`)
  t.same(JSON.parse(js.stdout || '{}'), { status: 'finished', keys: 10, total: 1000 }, 'with exact state')

  writeFileSync(join(project, 'consumer.ts'), TS_CONSUMER)
  // Plain NodeNext settings a TypeScript project would have: no allowImportingTsExtensions, no tsx;
  // the declarations are checked too (skipLibCheck off).
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: false, noEmit: true, types: [] }, files: ['consumer.ts'] }),
  )
  const tsc = await sh(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', '.'], project)
  t.equal(tsc.status, 0, 'type-checks against the declarations')
  t.equal(tsc.stdout, '', 'with no errors')

  const versionOut = await sh(join(project, 'node_modules/.bin/weir'), ['--version'], project)
  t.equal(versionOut.stdout, `weir ${manifest.version}\n`, 'the installed weir knows its version')

  writeFileSync(join(project, 'job.ts'), JOB_FILE)
  const cli = await sh(join(project, 'node_modules/.bin/weir'), ['run', 'job.ts', '--checkpoint-interval', '1000', '--log-level', 'warn', '--store-dir', 'cli-snapshots'], project)
  t.equal(cli.status, 0, `the installed weir runs a TypeScript job file${cli.status === 0 ? '' : `: ${cli.stderr}`}`)
  t.equal(cli.stdout.trim().split('\n').length, 300, 'a line per record')
  const workers = await sh(join(project, 'node_modules/.bin/weir'), ['run', 'job.ts', '--workers', '2', '--log-level', 'warn', '--store-dir', 'worker-snapshots'], project)
  t.equal(workers.status, 0, `the installed weir runs it on worker threads${workers.status === 0 ? '' : `: ${workers.stderr}`}`)
  t.same(workers.stdout.trim().split('\n').sort(), cli.stdout.trim().split('\n').sort(), 'with the same output')
  const state = await sh(join(project, 'node_modules/.bin/weir'), ['state', 'cli-job', 'count', 'count', '--store-dir', 'cli-snapshots'], project)
  t.equal(state.status, 0)
  const counts = state.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { value: number }).value)
  t.equal(counts.reduce((a, b) => a + b, 0), 300, 'weir state reads the exact counts from its snapshot')
})
