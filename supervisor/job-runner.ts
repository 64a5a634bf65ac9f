/**
 * Runs a job in this process (local mode): opens the store, restores from a snapshot, runs
 * attempts of the job, takes checkpoints and recovers from failures with the restart strategy
 * (docs/architecture.md section 7).
 */
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate'
import { IncompatibleSnapshotError, UserCodeError } from '../actors/errors.ts'
import type { JobBuilder } from '../actors/api/streams.ts'
import type { JobGraph } from '../actors/api/graph.ts'
import { Watchdog } from '../actors/runtime/watchdog.ts'
import type { Clock } from '../actors/time/clock.ts'
import { LocalExecutor } from '../actors/runtime/local-executor.ts'
import type { ExecutorMetrics, ExecutorTuning } from '../actors/runtime/executor-options.ts'
import { EmbeddedStore } from '../persistence/embedded-store.ts'
import { CorruptChunkError, CorruptSnapshotError, isRetryable } from '../persistence/errors.ts'
import { describeLeaseWait } from '../persistence/lease-takeover.ts'
import type { JobLease, SnapshotInfo, SnapshotLayout, SnapshotStore } from '../persistence/store.ts'
import { CheckpointCoordinator } from './checkpoint-coordinator.ts'
import type { CheckpointOptions, ResolvedCheckpointOptions } from './checkpoint-options.ts'
import { FinalCheckpointError, JobFailedError } from './errors.ts'
import { jobMachine, type JobStatus } from './job-machine.ts'
import { createLogger, type Logger, type LogLevel } from '../actors/runtime/logger.ts'
import { createRestartActor } from './restart-machine.ts'
import { describeRestartStrategy, type ResolvedRestartStrategy, type RestartStrategyOptions } from './restart-strategy.ts'
import { checkSnapshotLayout, newestVerifiedSnapshot, snapshotLayout } from './restore-point.ts'
import { resolveRunOptions } from './run-options.ts'

/** Options of {@link runJob}. */
export interface RunOptions {
  /** Where snapshots go. @default an EmbeddedStore in `.weir/snapshots` */
  store?: SnapshotStore
  /** Periodic checkpoints, or `false` for none. @default false */
  checkpoints?: CheckpointOptions | false
  /** What to do when the job fails. @default DEFAULT_RESTART_STRATEGY: exponential backoff from 1 s to 1 min, 10 restarts in a row */
  restart?: RestartStrategyOptions
  /**
   * Start from the latest completed snapshot of the job, from snapshot id `n`, or from nothing.
   * A snapshot is verified against its manifest first: with `'latest'` one that fails is skipped,
   * with a warning, for the newest that verifies; with an id it fails the job (`CorruptSnapshotError`).
   * @default 'none'
   */
  restore?: 'latest' | 'none' | number
  /** Log lines go here. @default a logger on stderr at `logLevel` */
  logger?: Logger
  /** @default 'info' */
  logLevel?: LogLevel
  /** Time between progress lines, in ms; 0 for none. @default 2000 */
  progressIntervalMs?: number
  /** Batching and scheduling of the local executor. */
  tuning?: Partial<ExecutorTuning>
  /**
   * Strict mode: what state handles return (`value()`, list `get()`, map `get()`, `entries()`,
   * ...) is deep-frozen, so changing it in place instead of writing it back throws a TypeError
   * where it is done. Meant for tests and development; costs nothing when off.
   * @default true if the environment variable `WEIR_STRICT_STATE` is `1` (a test suite can set it
   * once for every job), else false
   */
  strictState?: boolean
  /**
   * The watchdog: when one slice of processing (a user function that never returns, say) has run
   * this long, a line on stderr names the operator, the key and how long it has been stuck, and
   * again every as long. 0 turns it off.
   * @default 10000
   */
  watchdogMs?: number
  /**
   * Processing time, for processing-time timers, state TTL and source idleness: tests pass a
   * clock they move by hand.
   * @default systemClock (`Date.now`)
   */
  clock?: Clock
  /**
   * XState's inspector (`createActor(machine, { inspect })`), given every event of the job's
   * lifecycle actor and of every instance's: `@xstate.snapshot` events carry each transition, and
   * `event.actorRef.id` is the job's name or the instance's `operator[index]`. For tests and tools
   * that watch lifecycles (see `@statelyai/inspect` for a visual one). Called on the hot path of
   * transitions: keep it cheap.
   * @example
   * const states: string[] = []
   * await runJob(j, {
   *   inspect: (e) => {
   *     if (e.type === '@xstate.snapshot') states.push(`${(e.actorRef as AnyActorRef).id}: ${JSON.stringify((e.snapshot as unknown as { value: unknown }).value)}`)
   *   },
   * })
   */
  inspect?: ((event: InspectionEvent) => void) | Observer<InspectionEvent>
}

/** How a job ended. */
export interface JobResult {
  job: string
  status: 'finished' | 'canceled'
  /** Attempts run (1 + restarts). */
  attempts: number
  /** The last completed checkpoint, with the final state when checkpoints are on. */
  lastCheckpoint: SnapshotInfo | undefined
  /** Measurements of the last attempt. */
  metrics: ExecutorMetrics
  /** Checkpoints completed over all attempts. */
  checkpointsCompleted: number
  /** The snapshot the last attempt started from; undefined if it started from nothing. */
  restoredFrom: number | undefined
  /**
   * Records through each operator in the last attempt, by operator name: taken in, or for a
   * source sent. After a restore a source counts from its restored offset on.
   */
  records: Record<string, number>
}

/** What an attempt leaves for the job's result. */
interface AttemptEnd {
  metrics: ExecutorMetrics
  records: Record<string, number>
}

/** A running job. */
export interface JobHandle {
  readonly job: string
  /** Settles when the job finished, was canceled, or failed for good. */
  readonly done: Promise<JobResult>
  /** The job's lifecycle state. */
  status(): JobStatus
  /** Stops the job; `done` resolves with status `canceled`. */
  cancel(): Promise<void>
  /** Records through each operator of the current attempt so far: taken in, or for a source sent (empty between attempts). */
  recordsIn(): Record<string, number>
}

/** The default snapshot folder of local mode. */
export const DEFAULT_SNAPSHOT_DIR = '.weir/snapshots'

/**
 * Starts a job; see {@link runJob}.
 */
export function startJob(definition: JobBuilder | JobGraph, options: RunOptions = {}): JobHandle {
  // Resolved once, before anything runs: a bad option fails here, not inside an attempt.
  const resolved = resolveRunOptions(options)
  const graph = 'graph' in definition && typeof definition.graph === 'function' ? definition.graph() : (definition as JobGraph)
  const { checkpoints, restart: strategy, restore, tuning } = resolved
  const logger = (options.logger ?? createLogger({ level: resolved.logLevel })).child(graph.name)
  const ownStore = options.store === undefined
  const store = options.store ?? new EmbeddedStore({ dir: DEFAULT_SNAPSHOT_DIR })
  const userCode = { strictState: resolved.strictState, watchdogMs: resolved.watchdogMs, clock: resolved.clock, inspect: resolved.inspect }
  const runner = new JobRunner(graph, store, ownStore, checkpoints, strategy, restore, logger, tuning, resolved.progressIntervalMs, userCode)
  const done = runner.run()
  return { job: graph.name, done, status: () => runner.status(), cancel: () => runner.cancel(), recordsIn: () => runner.recordsIn() }
}

/**
 * Runs a job until it finishes, restarting it from its last checkpoint on failure.
 * @example
 * const result = await runJob(myJob, {
 *   store: new PostgresStore({ connectionString: 'postgres://127.0.0.1/test' }),
 *   checkpoints: { intervalMs: 1000 },
 *   restart: { type: 'exponential-backoff', initialMs: 100, maxMs: 10_000 },
 *   restore: 'latest',
 * })
 */
export async function runJob(definition: JobBuilder | JobGraph, options: RunOptions = {}): Promise<JobResult> {
  return await startJob(definition, options).done
}

class JobRunner {
  private readonly machine: Actor<typeof jobMachine>
  private executor: LocalExecutor | undefined
  private coordinator: CheckpointCoordinator | undefined
  private cancelRequested: (() => void) | undefined
  private readonly canceled: Promise<void>
  private lastCompleted: SnapshotInfo | undefined
  private checkpointsCompleted = 0
  private lease: JobLease | undefined
  private watchdog: Watchdog | undefined

  constructor(
    private readonly graph: JobGraph,
    private readonly store: SnapshotStore,
    private readonly ownStore: boolean,
    private readonly checkpoints: ResolvedCheckpointOptions | undefined,
    private readonly strategy: ResolvedRestartStrategy,
    private readonly restore: 'latest' | 'none' | number,
    private readonly log: Logger,
    private readonly tuning: ExecutorTuning,
    private readonly progressIntervalMs: number,
    private readonly userCode: { strictState: boolean; watchdogMs: number; clock: Clock; inspect: ((event: InspectionEvent) => void) | undefined },
  ) {
    this.machine = createActor(jobMachine, userCode.inspect === undefined ? { id: graph.name } : { id: graph.name, inspect: userCode.inspect })
    let last: string | undefined
    this.machine.subscribe((s) => {
      if (s.value !== last) this.log.info(`job -> ${String((last = s.value as string))}`)
    })
    this.machine.start()
    this.canceled = new Promise((resolve) => (this.cancelRequested = resolve))
  }

  status(): JobStatus {
    return this.machine.getSnapshot().value as JobStatus
  }

  recordsIn(): Record<string, number> {
    return this.executor?.recordsIn() ?? {}
  }

  async cancel(): Promise<void> {
    this.machine.send({ type: 'CANCEL' })
    this.cancelRequested?.()
  }

  private get layout(): SnapshotLayout {
    return snapshotLayout(this.graph)
  }

  async run(): Promise<JobResult> {
    this.machine.send({ type: 'SCHEDULE' })
    const restartActor = createRestartActor(this.strategy)
    restartActor.start()
    this.watchdog = this.userCode.watchdogMs === 0 ? undefined : Watchdog.start({ intervalMs: this.userCode.watchdogMs, scope: this.graph.name })
    try {
      await this.store.open()
      // One owner per job: a second runner stops here, before it changes anything. A runner
      // whose heartbeat stopped is waited out to its expiry, and the log says so.
      this.lease = await this.store.acquireLease(this.graph.name, {
        onWait: (wait) => this.log.warn(describeLeaseWait(wait), { owner: wait.holder.owner, host: wait.holder.host, pid: wait.holder.pid, waitMs: wait.waitMs }),
      })
      this.log.info('starting', { store: this.store.description, checkpoints: this.checkpoints ? `${this.checkpoints.intervalMs}ms ${this.checkpoints.mode}` : 'off', restart: describeRestartStrategy(this.strategy) })
      await this.abortLeftovers()
      let from = await this.initialSnapshot()
      let attempt = (from?.attempt ?? 0) + 1
      for (;;) {
        const outcome = await this.attempt(attempt, from)
        if (outcome.kind !== 'failed') return await this.finish(outcome.kind, attempt, outcome, from)
        const error = outcome.error
        if (from !== undefined && this.restore !== from.id && isCorruptionOf(error, from.id)) {
          // It verified against its manifest but failed while loading (a key in the wrong key
          // group, data that fails its checksum): skip it like one that fails verification.
          this.log.warn(`skipping snapshot ${from.id}: it cannot be restored`, { snapshot: from.id, error: (error as Error).message })
          const older = await this.newestVerified(from.id)
          if (older === undefined) {
            this.machine.send({ type: 'GIVE_UP' })
            throw error
          }
          this.machine.send({ type: 'RESTART' })
          from = older
          attempt++
          continue
        }
        this.log.error('attempt failed', { attempt, error: (error as Error)?.message ?? String(error), at: error instanceof UserCodeError ? error.location : undefined })
        if (!isRetryable(error)) {
          this.machine.send({ type: 'GIVE_UP' })
          throw error
        }
        restartActor.send({ type: 'FAILED', error, at: Date.now() })
        const decided = await waitFor(restartActor, this.canceled)
        if (decided === 'canceled') return await this.finish('canceled', attempt, outcome, from)
        if (decided === 'exhausted') {
          this.machine.send({ type: 'GIVE_UP' })
          throw new JobFailedError(this.graph.name, attempt, restartActor.getSnapshot().context.reason ?? 'the restart strategy gave up', error)
        }
        this.machine.send({ type: 'RESTART' })
        restartActor.send({ type: 'RESTARTED' })
        from = this.lastCompleted ?? from
        attempt++
        this.log.info('restarting', { attempt, from: from === undefined ? 'nothing' : `snapshot ${from.id}` })
      }
    } finally {
      restartActor.stop()
      await this.lease?.release().catch((error: unknown) => this.log.warn('could not release the job lease', { error: String(error) }))
      await this.watchdog?.stop()
      if (this.ownStore) await this.store.close()
    }
  }

  private async finish(kind: 'finished' | 'canceled', attempts: number, last: AttemptEnd, from: SnapshotInfo | undefined): Promise<JobResult> {
    this.machine.send({ type: kind === 'finished' ? 'FINISH' : 'CANCELED' })
    return { job: this.graph.name, status: kind, attempts, lastCheckpoint: this.lastCompleted, metrics: last.metrics, checkpointsCompleted: this.checkpointsCompleted, restoredFrom: from?.id, records: last.records }
  }

  /** Pending snapshots of a run that died can never complete: mark them aborted. */
  private async abortLeftovers(): Promise<void> {
    for (const s of await this.store.listSnapshots(this.graph.name)) {
      if (s.status === 'pending') await this.store.abortSnapshot(this.graph.name, s.id, 'left pending by an earlier run')
    }
  }

  private async initialSnapshot(): Promise<SnapshotInfo | undefined> {
    const job = this.graph.name
    if (this.restore === 'none') {
      // A fresh start over completed snapshots is often a forgotten --restore: say how to resume.
      const latest = await this.store.latestCompleted(job)
      if (latest !== undefined) {
        this.log.warn(`job ${job} has completed snapshots (latest ${latest.id}); starting from scratch. Pass --restore latest (restore: 'latest') to resume from it`)
      }
      return undefined
    }
    if (this.restore === 'latest') return await this.newestVerified()
    const s = await this.store.getSnapshot(job, this.restore)
    if (s === undefined) {
      const known = (await this.store.listSnapshots(job)).map((k) => `${k.id} (${k.status})`)
      const has = known.length === 0 ? `the job has no snapshots in ${this.store.description}` : `the job has snapshots ${known.join(', ')}`
      throw new IncompatibleSnapshotError(`no snapshot ${this.restore} of job ${job}; ${has}`, job, this.restore as number)
    }
    if (s.status !== 'completed') throw new IncompatibleSnapshotError(`snapshot is ${s.status}, only completed ones can be restored`, job, s.id)
    this.checkLayout(s)
    await this.store.verifySnapshot(job, s.id)
    this.lastCompleted = s
    return s
  }

  private async newestVerified(below = Infinity): Promise<SnapshotInfo | undefined> {
    const s = await newestVerifiedSnapshot(this.store, this.graph, this.log, below)
    if (s !== undefined) this.lastCompleted = s
    return s
  }

  private checkLayout(s: SnapshotInfo): void {
    checkSnapshotLayout(this.graph, s)
  }

  /**
   * Takes the final checkpoint, trying again after an abort up to {@link FINAL_CHECKPOINT_TRIES}
   * times (each within the checkpoint timeout), so that `tolerableFailures` cannot let a job
   * finish without its final state stored. Returns the error that fails the attempt, if any.
   */
  private async finalCheckpoint(coordinator: CheckpointCoordinator, failed: Promise<{ kind: 'failed'; error: unknown }>): Promise<unknown> {
    for (let tries = 1; tries <= FINAL_CHECKPOINT_TRIES; tries++) {
      const last = await Promise.race([coordinator.trigger(), failed])
      if (last !== undefined && 'error' in last) return last.error
      if (last !== undefined) return undefined
      if (tries < FINAL_CHECKPOINT_TRIES) this.log.warn('final checkpoint failed; trying again', { try: tries, of: FINAL_CHECKPOINT_TRIES })
    }
    const lastFailure = coordinator.lastFailure
    return new FinalCheckpointError(this.graph.name, FINAL_CHECKPOINT_TRIES, lastFailure?.checkpointId, lastFailure?.reason ?? 'unknown')
  }

  private async attempt(attempt: number, from: SnapshotInfo | undefined): Promise<AttemptEnd & ({ kind: 'finished' | 'canceled' } | { kind: 'failed'; error: unknown })> {
    let failure: ((error: unknown) => void) | undefined
    const failed = new Promise<{ kind: 'failed'; error: unknown }>((resolve) => (failure = (error) => resolve({ kind: 'failed', error })))
    // Another runner took the job over: stop at once rather than run on without the right to write.
    void this.lease?.lost.then((error) => failure!(error))
    const instances = this.graph.operators.flatMap((o) => Array.from({ length: o.parallelism }, (_, i) => `${o.uid}[${i}]`))
    const coordinator =
      this.checkpoints === undefined
        ? undefined
        : new CheckpointCoordinator({
            job: this.graph.name,
            attempt,
            store: this.store,
            options: this.checkpoints,
            layout: this.layout,
            instances,
            logger: this.log,
            onFailure: (e) => failure!(e),
            onCompleted: (info) => {
              // Checkpoints may complete out of order; the newest one is the restore point.
              if (this.lastCompleted === undefined || info.id > this.lastCompleted.id) this.lastCompleted = info
              this.checkpointsCompleted++
            },
          })
    this.coordinator = coordinator
    let executor: LocalExecutor | undefined
    let progress: NodeJS.Timeout | undefined
    const empty: ExecutorMetrics = { maxSliceMs: 0, maxSnapshotSyncMs: 0, maxEncodeSliceMs: 0 }
    try {
      executor = await LocalExecutor.create({
        graph: this.graph,
        attempt,
        store: this.store,
        mode: this.checkpoints?.mode ?? 'exactly-once',
        acks: coordinator ?? { ack() {}, decline() {} },
        logger: this.log,
        tuning: this.tuning,
        strictState: this.userCode.strictState,
        clock: this.userCode.clock,
        watchdog: this.watchdog,
        inspect: this.userCode.inspect,
      })
      this.executor = executor
      if (from !== undefined) {
        this.log.info('restoring', { snapshot: from.id, attempt })
        await executor.restore(from.id)
      }
      executor.start()
      this.machine.send({ type: 'RUNNING' })
      coordinator?.start(executor)
      if (this.progressIntervalMs > 0) {
        progress = setInterval(() => this.log.info('progress', executor!.recordsIn()), this.progressIntervalMs)
      }
      const outcome = await Promise.race([executor.done.then(() => 'finished' as const), failed, this.canceled.then(() => 'canceled' as const)])
      if (outcome === 'finished') {
        if (coordinator !== undefined) {
          coordinator.pause()
          // Every instance finished: a last checkpoint holds the final state, and the job is not
          // finished without it (section 6).
          const error = await this.finalCheckpoint(coordinator, failed)
          if (error !== undefined) {
            this.machine.send({ type: 'FAIL', error })
            await executor.cancel().catch(() => {})
            return { kind: 'failed', error, metrics: executor.metrics, records: executor.recordsIn() }
          }
        }
        const records = executor.recordsIn()
        this.log.info('progress', records)
        await executor.close()
        return { kind: 'finished', metrics: executor.metrics, records }
      }
      if (outcome === 'canceled') {
        await executor.cancel()
        return { kind: 'canceled', metrics: executor.metrics, records: executor.recordsIn() }
      }
      this.machine.send({ type: 'FAIL', error: outcome.error })
      await executor.cancel().catch(() => {})
      return { ...outcome, metrics: executor.metrics, records: executor.recordsIn() }
    } catch (error) {
      this.machine.send({ type: 'FAIL', error })
      await executor?.cancel().catch(() => {})
      return { kind: 'failed', error, metrics: executor?.metrics ?? empty, records: executor?.recordsIn() ?? {} }
    } finally {
      if (progress !== undefined) clearInterval(progress)
      await coordinator?.stop()
      this.executor = undefined
      this.coordinator = undefined
    }
  }
}

/** Tries of the final checkpoint before the attempt fails and the restart strategy runs it again. */
export const FINAL_CHECKPOINT_TRIES = 3

/** True if `error` says that snapshot `id` is damaged, as found while restoring it. */
function isCorruptionOf(error: unknown, id: number): boolean {
  return (error instanceof CorruptSnapshotError || error instanceof CorruptChunkError) && error.snapshotId === id
}

function waitFor(actor: ReturnType<typeof createRestartActor>, canceled: Promise<void>): Promise<'restarting' | 'exhausted' | 'canceled'> {
  return new Promise((resolve) => {
    const check = () => {
      const v = actor.getSnapshot().value
      if (v === 'restarting' || v === 'exhausted') {
        sub.unsubscribe()
        resolve(v)
      }
    }
    const sub = actor.subscribe(check)
    void canceled.then(() => {
      sub.unsubscribe()
      resolve('canceled')
    })
    check()
  })
}
