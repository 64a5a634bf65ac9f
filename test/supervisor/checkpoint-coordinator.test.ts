/**
 * The checkpoint coordinator (docs/architecture.md section 6) against a real EmbeddedStore in a tmp dir and
 * a small fake target, then end to end through `runJob`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { generatedRecord, generatorSource, job, readSnapshotState, runJob, valueState, createLogger, type GeneratorOptions } from '../../index.ts'
import { EmbeddedStore } from '../../persistence/embedded-store.ts'
import type { SnapshotInfo, SnapshotLayout } from '../../persistence/store.ts'
import { CheckpointCoordinator, type CheckpointTarget } from '../../supervisor/checkpoint-coordinator.ts'
import { CheckpointFailedError } from '../../supervisor/errors.ts'
import { resolveCheckpointOptions, type CheckpointOptions } from '../../supervisor/checkpoint-options.ts'
import { silentLogger } from '../../actors/runtime/logger.ts'

const JOB = 'orders'
const ATTEMPT = 3
const LAYOUT: SnapshotLayout = { maxParallelism: 8, operators: [{ uid: 'src', parallelism: 1 }, { uid: 'count', parallelism: 2 }] }
const INSTANCES = ['src[0]', 'count[0]', 'count[1]'] as const

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `cond` every few ms; false if it did not hold within `ms`. */
async function until(cond: () => boolean, ms = 2_000): Promise<boolean> {
  const end = performance.now() + ms
  while (!cond()) {
    if (performance.now() > end) return false
    await sleep(2)
  }
  return true
}

/** The instances of an attempt, as the coordinator sees them: records every call, acks when told to. */
class FakeTarget implements CheckpointTarget {
  readonly triggered: number[] = []
  readonly triggeredAt: number[] = []
  readonly completed: number[] = []
  readonly completedAt: number[] = []
  readonly aborted: number[] = []
  /** Runs on every trigger, e.g. to ack at once. */
  onTrigger: ((id: number) => void) | undefined

  triggerCheckpoint(id: number): void {
    this.triggered.push(id)
    this.triggeredAt.push(performance.now())
    this.onTrigger?.(id)
  }

  async checkpointCompleted(id: number): Promise<void> {
    this.completed.push(id)
    this.completedAt.push(performance.now())
  }

  checkpointAborted(id: number): void {
    this.aborted.push(id)
  }

  /** The id of the `n`-th trigger (0-based), once it arrived. */
  async nthTrigger(n: number): Promise<number> {
    if (!(await until(() => this.triggered.length > n))) throw new Error(`trigger #${n} never came (got ${this.triggered.length})`)
    return this.triggered[n]!
  }
}

interface Harness {
  store: EmbeddedStore
  target: FakeTarget
  coordinator: CheckpointCoordinator
  failures: unknown[]
  completedInfos: SnapshotInfo[]
  /** A coordinator of another attempt on the same store. */
  another(attempt: number): CheckpointCoordinator
  /** Writes `bytes` of operator state for `instance` into checkpoint `id`, then acks with what was written. */
  writeAndAck(id: number, instance: string, bytes: number): Promise<number>
  /** Acks checkpoint `id` for every instance, without state. */
  ackAll(id: number): void
}

interface HarnessOptions {
  options?: Omit<Partial<CheckpointOptions>, 'intervalMs'> & { intervalMs?: number }
  instances?: readonly string[]
  /** Start periodic triggering (else `start` then `pause`, so only `trigger()` triggers). */
  periodic?: boolean
}

async function harness(t: Test, o: HarnessOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-coordinator-'))
  const store = new EmbeddedStore({ dir })
  await store.open()
  await store.acquireLease(JOB)
  const target = new FakeTarget()
  const failures: unknown[] = []
  const completedInfos: SnapshotInfo[] = []
  const instances = o.instances ?? INSTANCES
  const coordinators: CheckpointCoordinator[] = []
  const make = (attempt: number) => {
    const c = new CheckpointCoordinator({
      job: JOB,
      attempt,
      store,
      options: resolveCheckpointOptions({ intervalMs: 60_000, ...o.options }),
      layout: LAYOUT,
      instances,
      logger: silentLogger,
      onFailure: (e) => failures.push(e),
      onCompleted: (info) => completedInfos.push(info),
    })
    coordinators.push(c)
    return c
  }
  const coordinator = make(ATTEMPT)
  coordinator.start(target)
  if (o.periodic !== true) coordinator.pause()
  t.teardown(async () => {
    for (const c of coordinators) await c.stop().catch(() => {})
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })
  return {
    store,
    target,
    coordinator,
    failures,
    completedInfos,
    another(attempt) {
      const c = make(attempt)
      c.start(target)
      c.pause()
      return c
    },
    async writeAndAck(id, instance, bytes) {
      const index = instances.indexOf(instance)
      const written = await store.writeChunks(JOB, id, [{ operatorUid: instance.replace(/\[.*$/, ''), kind: 'operator', index, format: 1, data: new Uint8Array(bytes).fill(7) }])
      coordinator.ack(ATTEMPT, id, instance, written)
      return written
    },
    ackAll(id) {
      for (const i of instances) coordinator.ack(ATTEMPT, id, i, 0)
    },
  }
}

/**
 * Collects unhandled rejections while a test runs. Node's default is to crash the process on
 * one, so the coordinator must not leave any.
 */
function captureUnhandled(t: Test): unknown[] {
  const unhandled: unknown[] = []
  const onUnhandled = (e: unknown) => void unhandled.push(e)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => void process.off('unhandledRejection', onUnhandled))
  return unhandled
}

/** Tracks whether a promise settled yet. */
function watch<T>(p: Promise<T>): { readonly settled: boolean; readonly promise: Promise<T> } {
  let settled = false
  const promise = p.finally(() => (settled = true))
  return {
    get settled() {
      return settled
    },
    promise,
  }
}

async function status(store: EmbeddedStore, id: number): Promise<string | undefined> {
  return (await store.getSnapshot(JOB, id))?.status
}

// ---------------------------------------------------------------------------------------------
// 1. Completion

t.test('coordinator - completes a checkpoint once every instance acked', async (t) => {
  const h = await harness(t)
  const done = watch(h.coordinator.trigger())
  const id = await h.target.nthTrigger(0)
  t.equal(await status(h.store, id), 'pending', 'recorded as pending when triggered')

  const a = await h.writeAndAck(id, 'src[0]', 10)
  const b = await h.writeAndAck(id, 'count[0]', 200)
  await sleep(30)
  t.equal(await status(h.store, id), 'pending', 'two acks of three: still pending')
  t.notOk(done.settled, 'trigger() waits for the last ack')
  t.same(h.target.completed, [], 'target not told of completion yet')

  const c = await h.writeAndAck(id, 'count[1]', 3000)
  const info = await done.promise
  t.ok(info, 'trigger() resolves with the completed checkpoint')
  t.equal(info?.id, id)
  t.equal(info?.status, 'completed')
  t.equal(info?.kind, 'checkpoint')
  t.equal(info?.attempt, ATTEMPT)

  const stored = await h.store.getSnapshot(JOB, id)
  t.equal(stored?.status, 'completed', 'the store shows it completed')
  t.equal(stored?.sizeBytes, a + b + c, 'sizeBytes counts every instance’s bytes')
  t.equal(a + b + c, 3210)
  t.ok(typeof stored?.durationMs === 'number' && stored.durationMs >= 25, `durationMs covers the wait for the last ack (${stored?.durationMs})`)
  t.ok(typeof stored?.completedAt === 'number' && stored.completedAt >= stored.triggeredAt, 'completedAt after triggeredAt')
  t.same(stored?.layout, LAYOUT, 'the layout is recorded')
  t.same(h.target.completed, [id], 'target told checkpointCompleted(id) once')
  t.same(h.target.aborted, [])
  t.same(h.completedInfos.map((i) => i.id), [id], 'onCompleted called with the checkpoint')
  t.equal(h.coordinator.completedCount, 1)
  t.same(h.failures, [])
  t.equal((await h.store.readChunks(JOB, id)).length, 3, 'the completed checkpoint is readable')
})

t.test('coordinator - an ack from an instance that is not listed does not count towards completion', async (t) => {
  const h = await harness(t, { instances: ['count[0]', 'count[1]'] })
  const done = watch(h.coordinator.trigger())
  const id = await h.target.nthTrigger(0)
  h.coordinator.ack(ATTEMPT, id, 'count[0]', 0)
  h.coordinator.ack(ATTEMPT, id, 'stranger[9]', 0)
  await sleep(40)
  t.equal(await status(h.store, id), 'pending', 'count[1] has not acked: not completed')
  t.notOk(done.settled)
  h.coordinator.ack(ATTEMPT, id, 'count[1]', 0)
  t.equal((await done.promise)?.status, 'completed')
})

t.test('coordinator - a repeated ack while the checkpoint is being completed completes it once', async (t) => {
  const h = await harness(t, { instances: ['count[0]', 'count[1]'] })
  const done = h.coordinator.trigger()
  const id = await h.target.nthTrigger(0)
  h.coordinator.ack(ATTEMPT, id, 'count[0]', 0)
  h.coordinator.ack(ATTEMPT, id, 'count[1]', 0)
  // A duplicate (e.g. a retried ack) arrives while the completed mark is being written.
  h.coordinator.ack(ATTEMPT, id, 'count[1]', 0)
  const info = await done
  await sleep(30)
  t.equal(info?.status, 'completed', 'trigger() resolves with the completed checkpoint')
  t.equal(await status(h.store, id), 'completed')
  t.same(h.failures, [], 'no checkpoint failure is reported')
  t.same(h.target.completed, [id])
})

// ---------------------------------------------------------------------------------------------
// 2. Fencing

t.test('coordinator - ignores acks of another attempt and of unknown checkpoint ids', async (t) => {
  const h = await harness(t)
  const done = watch(h.coordinator.trigger())
  const id = await h.target.nthTrigger(0)
  for (const i of INSTANCES) {
    h.coordinator.ack(ATTEMPT - 1, id, i, 5) // an older attempt
    h.coordinator.ack(ATTEMPT + 1, id, i, 5) // a newer one
    h.coordinator.ack(ATTEMPT, id + 1, i, 5) // not triggered
    h.coordinator.ack(ATTEMPT, id - 1, i, 5) // not triggered
  }
  await sleep(40)
  t.equal(await status(h.store, id), 'pending', 'fenced acks do not complete it')
  t.notOk(done.settled)
  t.same(h.target.completed, [])

  h.coordinator.ack(ATTEMPT, id, 'src[0]', 0)
  h.coordinator.ack(ATTEMPT, id, 'count[0]', 0)
  await sleep(20)
  t.equal(await status(h.store, id), 'pending', 'fenced acks did not leave marks that count later')
  h.coordinator.ack(ATTEMPT, id, 'count[1]', 0)
  t.equal((await done.promise)?.id, id)

  // Late acks of a completed checkpoint change nothing.
  h.ackAll(id)
  await sleep(20)
  t.same(h.target.completed, [id])
  t.equal(h.completedInfos.length, 1)
  t.same(h.failures, [])
})

t.test('coordinator - ignores declines of another attempt and of unknown checkpoint ids', async (t) => {
  const h = await harness(t)
  const done = watch(h.coordinator.trigger())
  const id = await h.target.nthTrigger(0)
  h.coordinator.decline(ATTEMPT - 1, id, 'count[0]', new Error('old attempt'))
  h.coordinator.decline(ATTEMPT, id + 7, 'count[0]', new Error('unknown id'))
  await sleep(30)
  t.equal(await status(h.store, id), 'pending')
  t.same(h.target.aborted, [])
  t.same(h.failures, [])
  h.ackAll(id)
  t.equal((await done.promise)?.status, 'completed')
})

// ---------------------------------------------------------------------------------------------
// 3. Timeout

t.test('coordinator - aborts a checkpoint that is not acked within timeoutMs', async (t) => {
  const h = await harness(t, { options: { timeoutMs: 150, tolerableFailures: 5 } })
  const began = performance.now()
  const done = watch(h.coordinator.trigger())
  const id = await h.target.nthTrigger(0)
  h.coordinator.ack(ATTEMPT, id, 'src[0]', 0)
  h.coordinator.ack(ATTEMPT, id, 'count[0]', 0)
  await sleep(20)
  t.notOk(done.settled, 'not aborted before the timeout')
  t.equal(await done.promise, undefined, 'trigger() resolves undefined')
  t.ok(performance.now() - began >= 145, 'not before timeoutMs')

  const stored = await h.store.getSnapshot(JOB, id)
  t.equal(stored?.status, 'aborted', 'aborted in the store')
  t.match(stored?.reason, /timed out after 150 ms/, 'the reason names the timeout')
  t.same(h.target.aborted, [id], 'target told checkpointAborted(id)')
  t.same(h.target.completed, [])

  h.coordinator.ack(ATTEMPT, id, 'count[1]', 0)
  await sleep(20)
  t.equal(await status(h.store, id), 'aborted', 'a late ack does not revive it')
  t.same(h.target.completed, [])
  t.same(h.failures, [], 'within tolerableFailures: no failover')
})

// ---------------------------------------------------------------------------------------------
// 4. tolerableFailures

/** Triggers one checkpoint and has `count[1]` decline it. */
async function failOne(t: Test, h: Harness, n: number): Promise<number> {
  const done = h.coordinator.trigger()
  const id = await h.target.nthTrigger(n)
  h.coordinator.decline(ATTEMPT, id, 'count[1]', new Error(`disk full #${n}`))
  t.equal(await done, undefined, `checkpoint ${id} failed`)
  return id
}

async function completeOne(h: Harness, n: number): Promise<number> {
  const done = h.coordinator.trigger()
  const id = await h.target.nthTrigger(n)
  h.ackAll(id)
  await done
  return id
}

t.test('coordinator - with tolerableFailures 0 the first failed checkpoint fails the job', async (t) => {
  const h = await harness(t, { options: { timeoutMs: 40 } })
  const done = h.coordinator.trigger()
  const id = await h.target.nthTrigger(0)
  t.equal(await done, undefined)
  t.equal(h.failures.length, 1, 'onFailure called')
  const err = h.failures[0]
  t.ok(err instanceof CheckpointFailedError, 'with a CheckpointFailedError')
  if (!(err instanceof CheckpointFailedError)) return
  t.equal(err.name, 'CheckpointFailedError')
  t.equal(err.job, JOB)
  t.equal(err.checkpointId, id)
  t.match(err.reason, /timed out/)
  t.equal(err.retryable, true, 'a restart can help')
  t.match(err.message, new RegExp(`job ${JOB}: checkpoint ${id} failed`))
})

t.test('coordinator - with tolerableFailures 2 the third failure in a row fails the job', async (t) => {
  const h = await harness(t, { options: { tolerableFailures: 2 } })
  await failOne(t, h, 0)
  await failOne(t, h, 1)
  t.same(h.failures, [], 'two failures are tolerated')
  const third = await failOne(t, h, 2)
  t.equal(h.failures.length, 1, 'the third fails the job')
  const err = h.failures[0]
  t.ok(err instanceof CheckpointFailedError)
  t.equal((err as CheckpointFailedError).checkpointId, third)
  t.match((err as CheckpointFailedError).reason, /count\[1\].*disk full #2/)
  t.match((err as CheckpointFailedError).cause, { message: 'disk full #2' }, 'the instance’s error is the cause')
})

t.test('coordinator - a completed checkpoint resets the count of failures in a row', async (t) => {
  const h = await harness(t, { options: { tolerableFailures: 2 } })
  await failOne(t, h, 0)
  await failOne(t, h, 1)
  await completeOne(h, 2)
  await failOne(t, h, 3)
  await failOne(t, h, 4)
  t.same(h.failures, [], 'F F C F F: never more than two in a row')
  await failOne(t, h, 5)
  t.equal(h.failures.length, 1, 'F F C F F F: the third in a row fails the job')
})

// ---------------------------------------------------------------------------------------------
// 5. Decline

t.test('coordinator - a decline aborts the checkpoint with the instance’s reason', async (t) => {
  const h = await harness(t, { options: { tolerableFailures: 1 } })
  const done = h.coordinator.trigger()
  const id = await h.target.nthTrigger(0)
  await h.writeAndAck(id, 'src[0]', 64)
  h.coordinator.decline(ATTEMPT, id, 'count[1]', new Error('ENOSPC: no space left'))
  t.equal(await done, undefined, 'trigger() resolves undefined')
  const stored = await h.store.getSnapshot(JOB, id)
  t.equal(stored?.status, 'aborted')
  t.match(stored?.reason, /count\[1\]/, 'the reason names the instance')
  t.match(stored?.reason, /ENOSPC: no space left/, 'and its error')
  t.same(h.target.aborted, [id])
  t.same(h.target.completed, [])
  t.same(h.failures, [], 'one failure is tolerated')

  // The rest of the acks arrive after the abort: nothing changes.
  h.coordinator.ack(ATTEMPT, id, 'count[0]', 0)
  h.coordinator.ack(ATTEMPT, id, 'count[1]', 0)
  await sleep(20)
  t.equal(await status(h.store, id), 'aborted')
})

t.test('coordinator - a failed checkpoint never harms the last completed one', async (t) => {
  const h = await harness(t, { options: { tolerableFailures: 3, timeoutMs: 50 } })
  const good = h.coordinator.trigger()
  const first = await h.target.nthTrigger(0)
  for (const i of INSTANCES) await h.writeAndAck(first, i, 16)
  await good
  await failOne(t, h, 1)
  const timedOut = h.coordinator.trigger()
  await h.target.nthTrigger(2)
  t.equal(await timedOut, undefined)
  t.equal((await h.store.latestCompleted(JOB))?.id, first, 'the latest completed is still the first')
  t.equal((await h.store.readChunks(JOB, first)).length, 3, 'and its state is intact')
})

// ---------------------------------------------------------------------------------------------
// 6. Retention

t.test('coordinator - keeps only the newest `retained` completed checkpoints, never savepoints', async (t) => {
  const h = await harness(t, { options: { retained: 2 } })
  // A savepoint a user took before: its id comes from the store, like the coordinator's.
  const savepoint = await h.store.nextSnapshotId(JOB)
  await h.store.beginSnapshot({ job: JOB, id: savepoint, kind: 'savepoint', attempt: 1, layout: LAYOUT, triggeredAt: Date.now() })
  await h.store.completeSnapshot(JOB, savepoint, { completedAt: Date.now(), durationMs: 1 })

  const ids: number[] = []
  for (let n = 0; n < 4; n++) ids.push(await completeOne(h, n))
  t.ok(ids.every((id) => id > savepoint), 'checkpoint ids come after the savepoint')
  const all = await h.store.listSnapshots(JOB)
  const completedCheckpoints = all.filter((s) => s.kind === 'checkpoint' && s.status === 'completed').map((s) => s.id)
  t.same(completedCheckpoints, ids.slice(-2), 'the 2 newest completed checkpoints remain')
  t.same(all.filter((s) => s.kind === 'checkpoint').map((s) => s.id), ids.slice(-2), 'older ones are gone from the store')
  const sp = all.find((s) => s.id === savepoint)
  t.equal(sp?.kind, 'savepoint', 'the savepoint is never pruned')
  t.equal(sp?.status, 'completed')
  t.same(h.failures, [])
})

t.test('coordinator - a savepoint begun in the store between checkpoints does not collide with the next checkpoint id', async (t) => {
  const h = await harness(t, { options: { retained: 1 } })
  const first = await completeOne(h, 0)
  const savepoint = await h.store.nextSnapshotId(JOB)
  await h.store.beginSnapshot({ job: JOB, id: savepoint, kind: 'savepoint', attempt: ATTEMPT, layout: LAYOUT, triggeredAt: Date.now() })
  await h.store.completeSnapshot(JOB, savepoint, { completedAt: Date.now(), durationMs: 1 })

  const done = watch(h.coordinator.trigger())
  await until(() => h.target.triggered.length > 1 || done.settled, 1_000)
  const next = h.target.triggered[1]
  if (next !== undefined) h.ackAll(next)
  const info = await done.promise
  t.same(h.failures, [], 'the next checkpoint does not fail')
  t.equal(info?.status, 'completed', 'the next checkpoint completes')
  t.ok(info !== undefined && info.id > savepoint, 'with an id above the savepoint’s')
  t.equal((await h.store.getSnapshot(JOB, savepoint))?.status, 'completed', 'the savepoint is kept')
  t.equal(await status(h.store, first), undefined, 'the older checkpoint is pruned')
})

// ---------------------------------------------------------------------------------------------
// 7. Periodic triggering

/** Acks every trigger on the next turn of the event loop. */
function autoAck(h: Harness): void {
  h.target.onTrigger = (id) => setImmediate(() => h.ackAll(id))
}

t.test('coordinator - triggers every intervalMs, the first one interval after start', async (t) => {
  const started = performance.now()
  const h = await harness(t, { options: { intervalMs: 30 }, periodic: true })
  autoAck(h)
  await sleep(270)
  const count = h.target.triggered.length
  const elapsed = performance.now() - started
  await h.coordinator.stop()
  t.ok(count >= 2, `several checkpoints in ${Math.round(elapsed)} ms (${count})`)
  // A trigger starts at least intervalMs after the previous one, so no more than elapsed/interval fit.
  t.ok(count <= Math.floor(elapsed / 30), `no more than one per interval (${count} in ${Math.round(elapsed)} ms)`)
  t.ok(h.target.triggeredAt[0]! - started >= 29, 'the first one comes one interval after start')
  t.ok(h.completedInfos.length >= count - 1, 'they complete')
  t.same(h.failures, [])
})

t.test('coordinator - waits minPauseMs after a checkpoint ended before the next', async (t) => {
  const started = performance.now()
  const h = await harness(t, { options: { intervalMs: 10, minPauseMs: 80 }, periodic: true })
  autoAck(h)
  await sleep(330)
  const count = h.target.triggered.length
  const elapsed = performance.now() - started
  await h.coordinator.stop()
  t.ok(count >= 2, `several checkpoints (${count})`)
  t.ok(count <= Math.floor(elapsed / 80) + 1, `no more than one per pause (${count} in ${Math.round(elapsed)} ms)`)
  for (let i = 1; i < h.target.triggeredAt.length; i++) {
    const ended = h.target.completedAt[i - 1]
    if (ended === undefined) continue
    const gap = h.target.triggeredAt[i]! - ended
    t.ok(gap >= 77, `pause between checkpoint ${i - 1}'s end and ${i}'s start: ${gap.toFixed(1)} ms`)
  }
})

t.test('coordinator - with maxConcurrent 1 no checkpoint is triggered while one is pending', async (t) => {
  const h = await harness(t, { options: { intervalMs: 10, maxConcurrent: 1 }, periodic: true })
  const id = await h.target.nthTrigger(0)
  await sleep(150)
  t.equal(h.target.triggered.length, 1, 'one pending, never acked: no other trigger')
  h.ackAll(id)
  t.ok(await until(() => h.target.triggered.length >= 2), 'once it completed, the next one comes')
  await h.coordinator.stop()
})

t.test('coordinator - with maxConcurrent 2 at most two checkpoints are pending at once', async (t) => {
  const h = await harness(t, { options: { intervalMs: 10, maxConcurrent: 2 }, periodic: true })
  await h.target.nthTrigger(1)
  await sleep(150)
  t.equal(h.target.triggered.length, 2, 'two pending, never acked')
  t.equal((await h.store.listSnapshots(JOB)).filter((s) => s.status === 'pending').length, 2)
})

t.test('coordinator - stop() aborts pending checkpoints in the store and triggers no more', async (t) => {
  const h = await harness(t, { options: { intervalMs: 10, maxConcurrent: 2 }, periodic: true })
  const manual = h.coordinator.trigger()
  t.ok(await until(() => h.target.triggered.length >= 2), 'two pending')
  await h.coordinator.stop()
  t.equal(await manual, undefined, 'a pending trigger() resolves undefined')
  const after = h.target.triggered.length
  const all = await h.store.listSnapshots(JOB)
  t.ok(all.length >= 2)
  for (const s of all) {
    t.equal(s.status, 'aborted', `checkpoint ${s.id} aborted`)
    t.match(s.reason, /stopped/)
  }
  // Acks that arrive after the stop change nothing.
  for (const id of h.target.triggered) h.ackAll(id)
  await sleep(120)
  t.equal(h.target.triggered.length, after, 'no trigger after stop')
  t.same(h.target.completed, [])
  t.ok((await h.store.listSnapshots(JOB)).every((s) => s.status === 'aborted'))
  t.same(h.failures, [], 'stopping is not a checkpoint failure')
})

t.test('coordinator - stop() while a checkpoint is being begun leaves nothing pending', async (t) => {
  const h = await harness(t)
  const done = h.coordinator.trigger()
  await h.coordinator.stop()
  t.equal(await done, undefined)
  t.same(h.target.triggered, [], 'the target is not asked to start it after stop()')
  const all = await h.store.listSnapshots(JOB)
  t.ok(all.every((s) => s.status === 'aborted'), `nothing pending (${all.map((s) => `${s.id}:${s.status}`).join(', ')})`)
  t.same(h.target.completed, [])
})

t.test('coordinator - pause() stops periodic triggers but lets pending checkpoints complete', async (t) => {
  const h = await harness(t, { options: { intervalMs: 10 }, periodic: true })
  const id = await h.target.nthTrigger(0)
  h.coordinator.pause()
  h.ackAll(id)
  t.ok(await until(() => h.target.completed.length === 1), 'the pending one completes')
  await sleep(100)
  t.equal(h.target.triggered.length, 1, 'no periodic trigger after pause')
  t.equal(await status(h.store, id), 'completed')
})

// ---------------------------------------------------------------------------------------------
// 8. Ids

t.test('coordinator - consecutive triggers get increasing ids, even two at once', async (t) => {
  const h = await harness(t)
  const a = h.coordinator.trigger()
  const b = h.coordinator.trigger()
  const first = await h.target.nthTrigger(0)
  const second = await h.target.nthTrigger(1)
  t.ok(second > first, `ids increase (${first}, ${second})`)
  h.ackAll(second)
  h.ackAll(first)
  const [ia, ib] = await Promise.all([a, b])
  t.same([ia?.id, ib?.id], [first, second], 'each trigger() resolves with its own checkpoint')
  const third = await completeOne(h, 2)
  t.ok(third > second)
  t.same(h.failures, [])

  // The next attempt's coordinator continues above every id ever begun.
  const next = h.another(ATTEMPT + 1)
  const d = next.trigger()
  const fourth = await h.target.nthTrigger(3)
  t.ok(fourth > third, `a later attempt never reuses an id (${fourth} > ${third})`)
  for (const i of INSTANCES) next.ack(ATTEMPT + 1, fourth, i, 0)
  t.equal((await d)?.attempt, ATTEMPT + 1)
  const ids = (await h.store.listSnapshots(JOB)).map((s) => s.id)
  t.equal(new Set(ids).size, ids.length, 'no duplicate ids in the store')
})

// ---------------------------------------------------------------------------------------------
// Failures of the target itself

t.test('coordinator - a target that throws while starting a checkpoint fails that checkpoint, not the coordinator', async (t) => {
  const unhandled = captureUnhandled(t)
  const h = await harness(t, { options: { timeoutMs: 200, tolerableFailures: 5 } })
  let throwOnce = true
  h.target.onTrigger = () => {
    if (throwOnce) {
      throwOnce = false
      throw new Error('offset() of a finished source threw')
    }
  }
  const first = await h.coordinator.trigger().then(
    (v) => ({ value: v }),
    (e: unknown) => ({ error: e }),
  )
  t.same(first, { value: undefined }, 'trigger() resolves undefined')
  const id = h.target.triggered[0]!
  t.equal(await status(h.store, id), 'aborted', 'the checkpoint is aborted, not left pending')
  const second = watch(h.coordinator.trigger().catch((e: unknown) => e))
  await until(() => h.target.triggered.length > 1 || second.settled, 1_000)
  const next = h.target.triggered[1]
  t.ok(next !== undefined, 'the next trigger() starts a checkpoint')
  if (next !== undefined) h.ackAll(next)
  t.match(await second.promise, { status: 'completed' }, 'and it completes')
  await t.resolves(h.coordinator.stop(), 'stop() still works')
  t.same(unhandled, [], 'no unhandled rejection')
})

t.test('coordinator - a target whose checkpointCompleted rejects fails over instead of leaving trigger() hanging', async (t) => {
  const unhandled = captureUnhandled(t)
  const h = await harness(t)
  h.target.checkpointCompleted = async () => {
    throw new Error('sink commit failed')
  }
  const done = h.coordinator.trigger()
  const id = await h.target.nthTrigger(0)
  h.ackAll(id)
  const outcome = await Promise.race([done.then((v) => ({ settled: v })), sleep(300).then(() => 'hung' as const)])
  t.not(outcome, 'hung', 'trigger() settles')
  t.equal(await status(h.store, id), 'completed', 'the checkpoint itself is durable')
  t.equal(h.failures.length, 1, 'the commit failure reaches onFailure, so the job fails over')
  t.match(h.failures[0], { message: /sink commit failed/ })
  t.same(unhandled, [], 'no unhandled rejection')
})

// ---------------------------------------------------------------------------------------------
// 10. End to end

const count = valueState<number>('count', { default: 0 })
const sum = valueState<number>('sum', { default: 0 })

function unionJob(name: string, a: GeneratorOptions, b: GeneratorOptions) {
  const j = job(name, { maxParallelism: 16, parallelism: 2 })
  const left = j.source('left', generatorSource(a))
  const right = j.source('right', generatorSource(b))
  left
    .union(right)
    .keyBy((r) => r.key)
    .process('count', { state: { count, sum } }, (r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
      const s = ctx.state(sum)
      s.update(s.value() + r.value)
    })
  return j
}

function expected(...gens: GeneratorOptions[]): { count: Map<string, number>; sum: Map<string, number> } {
  const e = { count: new Map<string, number>(), sum: new Map<string, number>() }
  for (const g of gens) {
    for (let seq = 0; seq < g.records; seq++) {
      const r = generatedRecord(g, seq)
      e.count.set(r.key, (e.count.get(r.key) ?? 0) + 1)
      e.sum.set(r.key, (e.sum.get(r.key) ?? 0) + r.value)
    }
  }
  return e
}

async function e2eStore(t: Test): Promise<EmbeddedStore> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-coordinator-e2e-'))
  const store = new EmbeddedStore({ dir })
  t.teardown(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })
  return store
}

for (const mode of ['at-least-once', 'exactly-once'] as const) {
  t.test(`checkpoints end to end (${mode}) - a union of two sources into one keyed counter ends with exact counts and one retained checkpoint`, async (t) => {
    const store = await e2eStore(t)
    const a: GeneratorOptions = { records: 12_000, keys: 40, seed: 5, ratePerSecond: 60_000 }
    const b: GeneratorOptions = { records: 9_000, keys: 25, seed: 6, ratePerSecond: 45_000 }
    const name = `union-${mode}`
    const lines: string[] = []
    const result = await runJob(unionJob(name, a, b), {
      store,
      checkpoints: { intervalMs: 10, mode, retained: 1 },
      restart: { type: 'none' },
      logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }),
      progressIntervalMs: 0,
    })
    t.equal(result.status, 'finished')
    t.equal(result.attempts, 1, 'no restart')
    t.ok(result.checkpointsCompleted >= 2, `checkpoints were taken while it ran (${result.checkpointsCompleted})`)
    t.same(lines.filter((l) => /checkpoint failed/.test(l)), [], 'no checkpoint failed')

    const want = expected(a, b)
    for (const state of ['count', 'sum'] as const) {
      const got = await readSnapshotState(store, name, 'count', state)
      t.equal(got.size, want[state].size, `${state}: one entry per key`)
      const wrong = [...want[state]].filter(([k, v]) => got.get(k) !== v)
      t.same(wrong.slice(0, 5), [], `${state}: every key holds exactly the expected value`)
    }

    const completed = (await store.listSnapshots(name)).filter((s) => s.status === 'completed')
    t.equal(completed.length, 1, 'retained 1: one completed checkpoint is left')
    t.equal(completed[0]?.id, result.lastCheckpoint?.id, 'it is the last one, with the final state')
  })
}

t.test('checkpoints end to end - retained 3 keeps the three newest completed checkpoints', async (t) => {
  const store = await e2eStore(t)
  const a: GeneratorOptions = { records: 10_000, keys: 30, seed: 8, ratePerSecond: 20_000 }
  const b: GeneratorOptions = { records: 10_000, keys: 30, seed: 9, ratePerSecond: 20_000 }
  const result = await runJob(unionJob('union-retained', a, b), {
    store,
    checkpoints: { intervalMs: 10, retained: 3 },
    logLevel: 'silent',
    progressIntervalMs: 0,
  })
  t.ok(result.checkpointsCompleted > 3, `more than three were taken (${result.checkpointsCompleted})`)
  const completed = (await store.listSnapshots('union-retained')).filter((s) => s.status === 'completed')
  t.equal(completed.length, 3)
  t.equal(completed.at(-1)?.id, result.lastCheckpoint?.id, 'the newest is the final one')
  const want = expected(a, b)
  const got = await readSnapshotState(store, 'union-retained', 'count', 'count')
  t.same(
    [...want.count].filter(([k, v]) => got.get(k) !== v),
    [],
    'exact final counts',
  )
})

t.test('coordinator - the timeout runs from the trigger: a store stuck in beginSnapshot fails the checkpoint at the deadline', async (t) => {
  const h = await harness(t, { options: { timeoutMs: 100 } })
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => (release = resolve))
  const begin = h.store.beginSnapshot.bind(h.store)
  h.store.beginSnapshot = async (b) => {
    await gate
    await begin(b)
  }
  const began = performance.now()
  const done = watch(h.coordinator.trigger())
  t.equal(await done.promise, undefined, 'trigger() resolves undefined although the store never answered')
  const waited = performance.now() - began
  t.ok(waited >= 95 && waited < 1000, `at the timeout (${Math.round(waited)} ms)`)
  t.equal(h.failures.length, 1, 'with tolerableFailures 0 the job fails over')
  const err = h.failures[0]
  t.ok(err instanceof CheckpointFailedError)
  t.equal((err as CheckpointFailedError).reason, 'timed out after 100 ms before the store began the snapshot')
  t.same(h.target.triggered, [], 'the instances were never asked to snapshot')

  release()
  const id = (err as CheckpointFailedError).checkpointId
  t.ok(await until(() => h.target.triggered.length === 0 && h.coordinator.lastFailure !== undefined), 'settled')
  await h.coordinator.stop()
  t.equal(await status(h.store, id), 'aborted', 'the late begin is aborted in the store, never left pending')
  t.same(h.target.triggered, [], 'and never started')
})
