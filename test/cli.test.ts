/**
 * The `weir` command as a user meets it: a mistake in a name says what exists instead and exits
 * 1, a mistake in a flag exits 2 with the usage, `| head` ends quietly, `--version` answers, and
 * a fresh start over completed snapshots says how to resume.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }

interface Ran {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs a command in the repository (a plain node, without the test runner's hooks). */
function sh(file: string, args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  delete childEnv.NODE_OPTIONS
  return new Promise((resolve) => {
    execFile(file, args, { cwd: root, env: childEnv, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
    })
  })
}
const weir = (args: string[], env: Record<string, string> = {}) => sh(process.execPath, ['bin/weir.js', ...args], env)

// One completed snapshot of the counting job with 20 000 keys: more than a pipe holds, for `| head`.
const FIXTURE = { WEIR_FIXTURE_RECORDS: '20000', WEIR_FIXTURE_KEYS: '20000', WEIR_FIXTURE_RATE: '100000000' }
const dir = mkdtempSync(join(tmpdir(), 'weir-cli-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

t.before(async () => {
  const run = await weir(['run', 'test/fixtures/counting-job.ts', '--checkpoint-interval', '60000', '--log-level', 'warn', '--store-dir', dir], FIXTURE)
  if (run.status !== 0) throw new Error(`the fixture job failed: ${run.stderr}`)
})

t.test('cli - --version and -v print the package version', async (t) => {
  for (const flag of ['--version', '-v']) {
    const r = await weir([flag])
    t.equal(r.status, 0, `${flag} exits 0`)
    t.equal(r.stdout, `weir ${version}\n`)
  }
})

t.test('cli - weir state with a name that is not there names what is, exit 1', async (t) => {
  const cases: [string[], string][] = [
    [['counting', 'nope', 'count'], 'weir: snapshot 1 of job counting has no operator "nope"; its operators are in, count\n'],
    [['counting', 'count', 'nope'], 'weir: operator count has no keyed state "nope" in snapshot 1 of job counting; its keyed states are sum, count, last-seqs, buckets\n'],
    [['nojob', 'count', 'count'], `weir: job nojob has no snapshots in embedded(${dir})\n`],
    [['counting', 'count', 'count', '--snapshot', '12345'], 'weir: no snapshot 12345 of job counting; the job has snapshots 1 (completed)\n'],
  ]
  for (const [args, message] of cases) {
    const r = await weir(['state', ...args, '--store-dir', dir])
    t.equal(r.status, 1, `${args.join(' ')}: exit 1`)
    t.equal(r.stdout, '', 'prints no state')
    t.equal(r.stderr, message)
  }
})

t.test('cli - weir snapshots of an unknown job says so, exit 1', async (t) => {
  const r = await weir(['snapshots', 'nojob', '--store-dir', dir])
  t.equal(r.status, 1)
  t.equal(r.stdout, '')
  t.equal(r.stderr, `weir: job nojob has no snapshots in embedded(${dir})\n`)
  const known = await weir(['snapshots', 'counting', '--store-dir', dir])
  t.equal(known.status, 0)
  t.match(known.stdout, /^1\tcheckpoint\tcompleted\t/)
})

t.test('cli - weir state | head -1 ends quietly when the reader goes away', async (t) => {
  const r = await sh('bash', ['-c', `node bin/weir.js state counting count count --store-dir '${dir}' | head -1; echo "weir exit \${PIPESTATUS[0]}" >&2`])
  t.match(r.stdout, /^\{"key":"k\d+","value":\d+\}\n$/, 'the first line only')
  t.equal(r.stderr, 'weir exit 0\n', 'no EPIPE stack, exit 0')
})

t.test('cli - --restore of a snapshot that does not exist names the ones that do, exit 1', async (t) => {
  const r = await weir(['run', 'test/fixtures/counting-job.ts', '--restore', '12345', '--log-level', 'error', '--store-dir', dir], FIXTURE)
  t.equal(r.status, 1)
  t.equal(r.stderr, 'weir: IncompatibleSnapshotError: job counting, snapshot 12345: no snapshot 12345 of job counting; the job has snapshots 1 (completed)\n')
})

t.test('cli - a fresh start over completed snapshots says how to resume', async (t) => {
  const r = await weir(['run', 'test/fixtures/counting-job.ts', '--log-level', 'warn', '--store-dir', dir], { ...FIXTURE, WEIR_FIXTURE_RECORDS: '10' })
  t.equal(r.status, 0)
  t.match(r.stderr, "WARN  [counting] job counting has completed snapshots (latest 1); starting from scratch. Pass --restore latest (restore: 'latest') to resume from it")
})

t.test('cli - invalid flag values are usage mistakes: exit 2 with the usage', async (t) => {
  const cases: [string[], string][] = [
    [['--checkpoint-interval', 'abc'], 'weir: --checkpoint-interval needs a non-negative integer, got "abc"'],
    [['--checkpoint-interval', '100', '--retained=-1'], 'weir: --retained needs a non-negative integer, got "-1"'],
    [['--checkpoint-interval', '100', '--retained', '-1'], "weir: Option '--retained' argument is ambiguous."],
    [['--checkpoint-interval', '100', '--retained', '0'], 'weir: --retained: expected an integer >= 1, got 0'],
    [['--log-level', 'loud'], 'weir: --log-level must be one of debug, info, warn, error, silent'],
    [['--checkpoint-interval', '100', '--checkpoint-mode', 'sometimes'], `weir: --checkpoint-mode: expected 'exactly-once' or 'at-least-once', got "sometimes"`],
    [['--restore', '0'], `weir: --restore: expected 'latest', 'none' or a snapshot id, got 0`],
    [['--restart', 'never'], 'weir: --restart: expected one of "none", "fixed-delay", "exponential-backoff", "failure-rate", got "never"'],
  ]
  const results = await Promise.all(cases.map(([args]) => weir(['run', 'test/fixtures/counting-job.ts', '--store-dir', join(dir, 'never'), ...args], FIXTURE)))
  cases.forEach(([args, message], i) => {
    const r = results[i]!
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`)
    t.ok(r.stderr.startsWith(`${message}\n`), `${args.join(' ')}: says ${message}`)
    t.match(r.stderr, /\nUsage:\n {2}weir run <job\.ts>/, 'prints the usage')
  })
})
