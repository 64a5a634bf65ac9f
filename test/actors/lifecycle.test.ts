import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createActor } from 'xstate'
import { instanceMachine, statusOf, type InstanceEvent, type InstanceStatus } from '../../actors/runtime/lifecycle.ts'
import { arraySink, createLogger, EmbeddedStore, generatorSource, job, runJob, valueState, type JobBuilder } from '../../index.ts'
import { runChild } from '../support/child.ts'

/** Runs events through the machine, returning the status after each. */
function walk(...events: InstanceEvent[]): InstanceStatus[] {
  const actor = createActor(instanceMachine).start()
  const seen: InstanceStatus[] = [statusOf(actor.getSnapshot().value)]
  for (const e of events) {
    actor.send(e)
    seen.push(statusOf(actor.getSnapshot().value))
  }
  actor.stop()
  return seen
}

t.test('lifecycle - created -> restoring -> running.processing -> running.aligning -> snapshotting -> running -> finished', async (t) => {
  t.same(
    walk(
      { type: 'RESTORE' },
      { type: 'RUN' },
      { type: 'ALIGN', checkpointId: 1 },
      { type: 'SNAPSHOT', checkpointId: 1 },
      { type: 'SNAPSHOT_TAKEN', checkpointId: 1 },
      { type: 'FINISH' },
    ),
    ['created', 'restoring', 'running.processing', 'running.aligning', 'snapshotting', 'running.processing', 'finished'],
  )
})

t.test('lifecycle - an instance without a snapshot goes from created straight to running', async (t) => {
  t.same(walk({ type: 'RUN' }), ['created', 'running.processing'])
})

t.test('lifecycle - a single-input instance snapshots from processing, without aligning', async (t) => {
  t.same(walk({ type: 'RUN' }, { type: 'SNAPSHOT', checkpointId: 1 }, { type: 'SNAPSHOT_TAKEN', checkpointId: 1 }), [
    'created',
    'running.processing',
    'snapshotting',
    'running.processing',
  ])
})

t.test('lifecycle - an aborted alignment returns to processing; a newer ALIGN keeps aligning', async (t) => {
  t.same(walk({ type: 'RUN' }, { type: 'ALIGN', checkpointId: 1 }, { type: 'ALIGN', checkpointId: 2 }, { type: 'ALIGN_ABORTED', checkpointId: 2 }), [
    'created',
    'running.processing',
    'running.aligning',
    'running.aligning',
    'running.processing',
  ])
})

t.test('lifecycle - FINISH while snapshotting ends the instance', async (t) => {
  t.same(walk({ type: 'RUN' }, { type: 'SNAPSHOT', checkpointId: 1 }, { type: 'FINISH' }).at(-1), 'finished')
})

t.test('lifecycle - FAIL and CANCEL leave running from any sub-state', async (t) => {
  t.same(walk({ type: 'RUN' }, { type: 'FAIL', error: new Error('boom') }).at(-1), 'failed')
  t.same(walk({ type: 'RUN' }, { type: 'ALIGN', checkpointId: 1 }, { type: 'FAIL', error: 1 }).at(-1), 'failed')
  t.same(walk({ type: 'RUN' }, { type: 'CANCEL' }).at(-1), 'canceled')
  t.same(walk({ type: 'RUN' }, { type: 'ALIGN', checkpointId: 1 }, { type: 'CANCEL' }).at(-1), 'canceled')
  t.same(walk({ type: 'RUN' }, { type: 'SNAPSHOT', checkpointId: 1 }, { type: 'FAIL', error: 1 }).at(-1), 'failed')
  t.same(walk({ type: 'RESTORE' }, { type: 'FAIL', error: 1 }).at(-1), 'failed', 'a restore can fail')
  t.same(walk({ type: 'CANCEL' }).at(-1), 'canceled', 'canceled before it ran')
})

t.test('lifecycle - events a state does not handle leave it unchanged', async (t) => {
  t.same(walk({ type: 'SNAPSHOT', checkpointId: 1 }, { type: 'FINISH' }, { type: 'ALIGN', checkpointId: 1 }), ['created', 'created', 'created', 'created'])
  t.same(walk({ type: 'RESTORE' }, { type: 'SNAPSHOT', checkpointId: 1 }, { type: 'RESTORE' }).at(-1), 'restoring')
  t.same(walk({ type: 'RUN' }, { type: 'RUN' }, { type: 'RESTORE' }, { type: 'SNAPSHOT_TAKEN', checkpointId: 1 }).at(-1), 'running.processing')
  t.same(walk({ type: 'RUN' }, { type: 'SNAPSHOT', checkpointId: 1 }, { type: 'ALIGN', checkpointId: 2 }).at(-1), 'snapshotting')
})

t.test('lifecycle - final states are done and ignore later events', async (t) => {
  const later: InstanceEvent[] = [
    { type: 'RUN' },
    { type: 'RESTORE' },
    { type: 'FAIL', error: new Error('late') },
    { type: 'CANCEL' },
    { type: 'FINISH' },
    { type: 'SNAPSHOT', checkpointId: 9 },
  ]
  for (const [end, event] of [
    ['finished', { type: 'FINISH' }],
    ['failed', { type: 'FAIL', error: 1 }],
    ['canceled', { type: 'CANCEL' }],
  ] as const) {
    const actor = createActor(instanceMachine).start()
    actor.send({ type: 'RUN' })
    actor.send(event)
    t.equal(statusOf(actor.getSnapshot().value), end)
    t.equal(actor.getSnapshot().status, 'done', `${end} is a final state`)
    for (const e of later) actor.send(e)
    t.equal(statusOf(actor.getSnapshot().value), end, `${end} ignores later events`)
  }
})

t.test('lifecycle - statusOf flattens nested state values into dotted names', async (t) => {
  t.equal(statusOf('created'), 'created')
  t.equal(statusOf({ running: 'aligning' }), 'running.aligning')
})

/** An EmbeddedStore on a fresh tmp dir, closed and removed when the test ends. */
function fixture(t: Test): { dir: string; store: EmbeddedStore } {
  const dir = mkdtempSync(join(tmpdir(), 'weir-lifecycle-'))
  const store = new EmbeddedStore({ dir })
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { dir, store }
}

/** Per instance id, the statuses its log lines reported, in order. */
function transitionsByInstance(lines: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const line of lines) {
    const m = /instance -> (\S+) instance=(\S+)/.exec(line)
    if (m === null) continue
    const list = out.get(m[2]!) ?? []
    list.push(m[1]!)
    out.set(m[2]!, list)
  }
  return out
}

function countingJob(name: string, records: number, fail = false): JobBuilder {
  const count = valueState<number>('count', { default: 0 })
  const j = job(name, { maxParallelism: 128 })
  j.source('in', generatorSource({ records, keys: 50, ratePerSecond: 100_000 }))
    .keyBy((r) => r.key)
    .process('count', { state: { count }, parallelism: 2 }, (r, ctx) => {
      if (fail && r.seq === records - 1) throw new Error('the last record is poison')
      const c = ctx.state(count)
      c.update(c.value() + 1)
      ctx.emit({ key: ctx.key, n: c.value() })
    })
    .sink('out', arraySink<unknown>([]))
  return j
}

t.test('lifecycle, end to end - every instance goes created -> running -> snapshotting -> ... -> finished', async (t) => {
  const { store } = fixture(t)
  const lines: string[] = []
  const logger = createLogger({ level: 'debug', write: (line) => lines.push(line) })
  // 40 000 records at 100 000 a second: about 400 ms, so 20 ms checkpoints happen while it runs.
  const result = await runJob(countingJob('lifecycle-e2e', 40_000), { store, checkpoints: { intervalMs: 20 }, logger, progressIntervalMs: 0 })
  t.equal(result.status, 'finished')
  t.ok(result.checkpointsCompleted >= 2, `checkpoints completed: ${result.checkpointsCompleted}`)
  const byInstance = transitionsByInstance(lines)
  t.same([...byInstance.keys()].sort(), ['count[0]', 'count[1]', 'in[0]', 'out[0]'])
  for (const [id, seq] of byInstance) {
    t.same(seq.slice(0, 2), ['created', 'running.processing'], `${id} starts created, then runs`)
    t.equal(seq.at(-1), 'finished', `${id} ends finished`)
    t.ok(seq.includes('snapshotting'), `${id} took a snapshot while running`)
    t.equal(seq.filter((s) => s === 'finished').length, 1, `${id} finishes once`)
    seq.forEach((s, i) => {
      if (s === 'snapshotting') t.match(seq[i + 1], /^(running\.processing|finished)$/, `${id}: after snapshotting, back to running or finished`)
      if (s === 'running.aligning') t.equal(seq[i + 1], 'snapshotting', `${id}: an alignment here always completes`)
    })
  }
})

t.test('lifecycle, end to end - a run restored from a snapshot goes created -> restoring -> running', async (t) => {
  const { store } = fixture(t)
  await runJob(countingJob('lifecycle-restore', 2_000), { store, checkpoints: { intervalMs: 20 }, logLevel: 'silent' })
  const lines: string[] = []
  const logger = createLogger({ level: 'debug', write: (line) => lines.push(line) })
  const result = await runJob(countingJob('lifecycle-restore', 2_000), { store, checkpoints: { intervalMs: 20 }, restore: 'latest', logger, progressIntervalMs: 0 })
  t.equal(result.status, 'finished')
  for (const [id, seq] of transitionsByInstance(lines)) {
    t.same(seq.slice(0, 3), ['created', 'restoring', 'running.processing'], `${id} restores before it runs`)
    t.equal(seq.at(-1), 'finished')
  }
})

t.test('lifecycle, end to end - when user code throws, the running instances end failed', async (t) => {
  const { store } = fixture(t)
  const lines: string[] = []
  const logger = createLogger({ level: 'debug', write: (line) => lines.push(line) })
  await t.rejects(runJob(countingJob('lifecycle-fail', 2_000, true), { store, logger, restart: { type: 'none' }, progressIntervalMs: 0 }), {
    // With no restarts, the job fails with the user's error as the cause.
    name: 'JobFailedError',
    message: /none strategy.*user code threw: the last record is poison/,
    cause: { name: 'UserCodeError' },
  })
  const byInstance = transitionsByInstance(lines)
  const failed = [...byInstance].filter(([, seq]) => seq.at(-1) === 'failed').map(([id]) => id)
  t.ok(failed.some((id) => id.startsWith('count[')), `the failing operator's instance ends failed (failed: ${failed.join(', ')})`)
  for (const [id, seq] of byInstance) t.match(seq.at(-1), /^(failed|finished)$/, `${id} ends failed or finished, never still running`)
})

const INDEX_URL = new URL('../../index.ts', import.meta.url).href


t.test('lifecycle, end to end - canceling a job while its source is idle leaves the process able to run the next job', async (t) => {
  // A rate-limited source is idle most of the time, so the executor waits on a timer when the
  // cancel comes. In a child process: if the cancel breaks the event loop it breaks only there.
  const { dir } = fixture(t)
  const script = `
    import { job, generatorSource, startJob, runJob, arraySink, EmbeddedStore } from ${JSON.stringify(INDEX_URL)}
    const store = new EmbeddedStore({ dir: process.env.WEIR_TEST_DIR })
    const quiet = { store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' } }
    const slow = job('idle')
    slow.source('in', generatorSource({ records: 1_000_000, keys: 10, ratePerSecond: 20 })).sink('out', arraySink([]))
    const handle = startJob(slow, quiet)
    await new Promise((resolve) => setTimeout(resolve, 300))
    await handle.cancel()
    const canceled = (await handle.done).status
    const within = (promise, ms) => Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve('timed out'), ms))])
    const immediate = await within(new Promise((resolve) => setImmediate(() => resolve('ran'))), 500)
    const out = []
    const next = job('next')
    next.source('in', generatorSource({ records: 1_000, keys: 10 })).sink('out', arraySink(out))
    const second = await within(runJob(next, quiet).then((r) => r.status), 3_000)
    console.log(JSON.stringify({ canceled, immediate, second, records: out.length }))
    process.exit(0)
  `
  const result = await runChild(script, dir, 20_000)
  t.same(result, { canceled: 'canceled', immediate: 'ran', second: 'finished', records: 1_000 })
})
