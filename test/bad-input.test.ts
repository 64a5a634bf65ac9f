/**
 * Bad input gets a clear error and loses nothing: an unreachable database, a corrupt chunk, a
 * snapshot from an incompatible job, unknown options and malformed job files.
 */
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, statSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import {
  CorruptChunkError,
  CorruptSnapshotError,
  IncompatibleSnapshotError,
  job,
  PostgresStore,
  runJob,
  startJob,
  StoreUnavailableError,
  UnknownOptionError,
  generatorSource,
  valueState,
  type SnapshotStore,
} from '../index.ts'
import { assertFinalState, countingJob, expectedState } from './support/counting.ts'
import { failure } from './support/expect.ts'
import { RESTORE_OFF, faultTest } from './support/controls.ts'
import { recordsLeftAfter } from './support/kill-runs.ts'
import { pgClient, testStores, type TestStore } from './support/stores.ts'

const root = fileURLToPath(new URL('..', import.meta.url))

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  await new Promise((r) => server.close(r))
  return port
}


t.test('unreachable database - runJob fails at once with StoreUnavailableError naming host and port', async (t) => {
  const port = await closedPort()
  const store = new PostgresStore({ connectionString: `postgres://127.0.0.1:${port}/test`, connectTimeoutMs: 2000 })
  const began = Date.now()
  const err = await failure(runJob(countingJob({ name: 'no-db', records: 10, keys: 2 }), { store, checkpoints: { intervalMs: 10 }, logLevel: 'silent' }))
  t.type(err, StoreUnavailableError)
  t.match(err.message, `127.0.0.1:${port}`)
  t.ok(Date.now() - began < 10_000, 'without waiting for restarts')
  await store.close()
})

/** Flips one byte of one stored chunk of the latest snapshot. */
async function corruptOneChunk(ts: TestStore, jobName: string): Promise<void> {
  const latest = (await ts.store.latestCompleted(jobName))!
  if (ts.kind === 'postgres') {
    const schema = ts.cliArgs[ts.cliArgs.indexOf('--pg-schema') + 1]!
    const client = await pgClient()
    const res = await client.query(
      `UPDATE "${schema}".state_chunks SET data = set_byte(data, length(data) / 2, (get_byte(data, length(data) / 2) + 1) % 256)
       WHERE ctid = (SELECT ctid FROM "${schema}".state_chunks WHERE job = $1 AND snapshot_id = $2 AND kind = 'keyed' AND length(data) > 0 LIMIT 1)`,
      [jobName, latest.id],
    )
    await client.end()
    if (res.rowCount !== 1) throw new Error('no chunk to corrupt')
  } else {
    const dir = join(ts.cliArgs[ts.cliArgs.indexOf('--store-dir') + 1]!, jobName, String(latest.id))
    const file = readdirSync(dir)
      .filter((f) => f.startsWith('chunks-'))
      .map((f) => join(dir, f))
      .sort((a, b) => statSync(b).size - statSync(a).size)[0]!
    const bytes = readFileSync(file)
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff
    writeFileSync(file, bytes)
  }
}

const count = valueState<number>('n', { default: 0 })
function tinyJob(name: string, maxParallelism: number) {
  return job(name, { maxParallelism })
    .source('in', generatorSource({ records: 2000, keys: 50 }))
    .keyBy((r) => r.key)
    .process('count', { state: { count } }, (_r, ctx) => ctx.state(count).update(ctx.state(count).value() + 1)).job
}

for (const { name, make } of testStores) {
  faultTest(t, `corrupt chunk (${name}) - restoring it by id fails with a corruption error and the snapshot is kept; 'latest' falls back to the older one`, async (t, mutation) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const jobName = `corrupt-${name}`
    const gen = { records: 20_000, keys: 300 }
    const opts = { store: ts.store, checkpoints: { intervalMs: 10 }, logLevel: 'silent' as const }
    const first = await runJob(countingJob({ name: jobName, ...gen, ratePerSecond: 40_000 }), opts)
    const before = await ts.store.listSnapshots(jobName)
    const completed = before.filter((s) => s.status === 'completed').map((s) => s.id)
    await corruptOneChunk(ts, jobName)
    const err = await failure(runJob(countingJob({ name: jobName, ...gen }), { ...opts, restore: first.lastCheckpoint!.id }))
    // A flipped data byte fails the chunk's checksum when read (CorruptChunkError); in an embedded
    // batch file it may instead break the file's layout, which the manifest check reports.
    t.ok(err instanceof CorruptChunkError || err instanceof CorruptSnapshotError, `a corruption error: ${err.name}`)
    t.match(err.message, /corrupt/)
    if (ts.kind === 'postgres') t.match(err.message, /key group \d+\) of operator 'count'/)
    t.equal((err as CorruptChunkError).snapshotId, first.lastCheckpoint!.id)
    const after = await ts.store.listSnapshots(jobName)
    t.equal(JSON.stringify(after.filter((s) => s.status === 'completed').map((s) => s.id)), JSON.stringify(completed), 'no completed snapshot was lost, overwritten or added')
    const older = completed[completed.length - 2]
    t.ok(older !== undefined, `an older snapshot is retained (${completed.join(', ')})`)
    const left = await recordsLeftAfter(ts.store, jobName, older!, 'in', gen.records)
    const fallback = await runJob(countingJob({ name: jobName, ...gen }), { ...opts, restore: mutation?.restore ?? 'latest' })
    t.equal(fallback.status, 'finished')
    t.equal(fallback.restoredFrom, older, `'latest' falls back to the older retained snapshot ${older}`)
    t.equal(fallback.records['in'], left, `and reads the ${left} records after its offset`)
    await assertFinalState(t, ts, jobName, expectedState(gen))
  }, [{ mutation: RESTORE_OFF, because: /'latest' falls back to the older retained snapshot/ }])

  t.test(`incompatible snapshot (${name}) - another maxParallelism is refused, nothing is lost`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const opts = { store: ts.store, checkpoints: { intervalMs: 10 }, logLevel: 'silent' as const }
    const first = await runJob(tinyJob(`maxp-${name}`, 128), opts)
    const err = await failure(runJob(tinyJob(`maxp-${name}`, 64), { ...opts, restore: 'latest' }))
    t.type(err, IncompatibleSnapshotError)
    t.match(err.message, /maxParallelism is 128 in the snapshot but 64 in the job/)
    t.equal((await ts.store.latestCompleted(`maxp-${name}`))?.id, first.lastCheckpoint!.id, 'the snapshot is still the latest')
    const missing = await failure(runJob(tinyJob(`maxp-${name}`, 128), { ...opts, restore: 9999 }))
    t.type(missing, IncompatibleSnapshotError)
    t.match(missing.message, new RegExp(`snapshot 9999: no snapshot 9999 of job maxp-${name}; the job has snapshots (\\d+ \\(\\w+\\), )*${first.lastCheckpoint!.id} \\(completed\\)`))
  })
}

t.test('options - an unknown or invalid option is named, before anything runs', async (t) => {
  t.type(await failure(runJob(tinyJob('opts', 128), { checkpionts: { intervalMs: 5 } } as never)), UnknownOptionError)
  t.match((await failure(runJob(tinyJob('opts', 128), { checkpoints: { intervalMs: 5, retain: 2 } } as never))).message, /unknown option checkpoints.retain/)
  t.match((await failure(runJob(tinyJob('opts', 128), { restart: { type: 'fixed-delay', delayMs: -1 } }))).message, /restart.delayMs/)
  t.throws(() => startJob(tinyJob('opts', 128), { restore: 'earliest' as never }), /option restore/)
})

function weir(args: string[], cwd = root) {
  return spawnSync(process.execPath, [join(root, 'bin/weir.js'), ...args], { cwd, encoding: 'utf8', timeout: 30_000 })
}

t.test('cli - unknown option, malformed job file and missing file give clear errors', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // Job files are ES modules, as in a project with "type": "module".
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n')
  const unknown = weir(['run', 'examples/payments/job.ts', '--checkpoint-intervall', '5'])
  t.equal(unknown.status, 2)
  t.match(unknown.stderr, /Unknown option '--checkpoint-intervall'/)
  t.match(unknown.stderr, /Usage:/)

  const notAJob = join(dir, 'not-a-job.ts')
  writeFileSync(notAJob, 'export default { name: "x" }\n')
  const bad = weir(['run', notAJob, '--store-dir', join(dir, 'snapshots')])
  t.equal(bad.status, 2)
  t.match(bad.stderr, /must export a job as its default export/)

  const broken = join(dir, 'broken.ts')
  writeFileSync(broken, `import { job } from '${join(root, 'index.ts')}'\nexport default job('two words')\n`)
  const brokenRun = weir(['run', broken, '--store-dir', join(dir, 'snapshots')])
  t.equal(brokenRun.status, 1)
  t.match(brokenRun.stderr, /JobDefinitionError: job name must match/)

  const missing = weir(['run', join(dir, 'nope.ts')])
  t.equal(missing.status, 1)
  t.match(missing.stderr, /nope\.ts/)

  const badStore = weir(['run', 'examples/payments/job.ts', '--store', 'mysql://x'])
  t.equal(badStore.status, 2)
  t.match(badStore.stderr, /--store must be "embedded" or a postgres:\/\/ URL/)
})

export type { SnapshotStore }
