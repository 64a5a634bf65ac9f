/**
 * The checkpoint coordinator of one job attempt (docs/architecture.md section 6): triggers checkpoints,
 * collects acks, completes them in the store (last write), aborts those that time out or fail,
 * fails the job after too many failures in a row, and prunes old checkpoints.
 */
import { describeThrown, WeirError } from '../persistence/errors.ts'
import type { SnapshotInfo, SnapshotLayout, SnapshotStore } from '../persistence/store.ts'
import type { CheckpointAcks } from '../actors/runtime/executor-options.ts'
import type { ResolvedCheckpointOptions } from './checkpoint-options.ts'
import { CheckpointFailedError } from './errors.ts'
import type { Logger } from '../actors/runtime/logger.ts'

/** What the coordinator drives: the instances of the attempt. */
export interface CheckpointTarget {
  triggerCheckpoint(id: number): void
  checkpointCompleted(id: number): Promise<void>
  checkpointAborted(id: number): void
}

/** A checkpoint from its trigger until it is pending in the store (or gave up). */
interface Trigger {
  /** Known once the store was asked for the next id. */
  id: number | undefined
  startedAt: number
  /** The timeout fired before the store began the snapshot. */
  expired: boolean
  timeout: NodeJS.Timeout | undefined
  resolve: (info: SnapshotInfo | undefined) => void
}

interface Pending {
  id: number
  startedAt: number
  acked: Set<string>
  bytes: number
  timeout: NodeJS.Timeout | undefined
  resolve: (info: SnapshotInfo | undefined) => void
}

export interface CoordinatorOptions {
  job: string
  attempt: number
  store: SnapshotStore
  options: ResolvedCheckpointOptions
  layout: SnapshotLayout
  /** Ids of every instance that must ack. */
  instances: readonly string[]
  logger: Logger
  /** Called when the job must fail over (possibly more than once; the first call counts). */
  onFailure: (error: unknown) => void
  /** Called after each completed checkpoint. */
  onCompleted?: (info: SnapshotInfo) => void
}

export class CheckpointCoordinator implements CheckpointAcks {
  private target: CheckpointTarget | undefined
  private readonly pending = new Map<number, Pending>()
  private timer: NodeJS.Timeout | undefined
  private lastTriggerAt = -Infinity
  private lastEndAt = -Infinity
  private triggering = false
  private beginning: Promise<void> = Promise.resolve()
  #lastFailure: { checkpointId: number; reason: string } | undefined
  /** Completions in flight; stop() waits for them so none writes after the attempt ended. */
  private readonly completing = new Set<Promise<void>>()
  private nextId: number | undefined
  private consecutiveFailures = 0
  private stopped = false
  private readonly log: Logger
  completedCount = 0

  private readonly instances: ReadonlySet<string>

  constructor(private readonly o: CoordinatorOptions) {
    this.log = o.logger
    this.instances = new Set(o.instances)
  }

  /** The last checkpoint that failed, and why (for the final checkpoint's error). */
  get lastFailure(): { readonly checkpointId: number; readonly reason: string } | undefined {
    return this.#lastFailure
  }

  /** Starts periodic checkpoints of `target`. */
  start(target: CheckpointTarget): void {
    this.target = target
    // The first checkpoint comes one interval after the start, as later ones do.
    this.lastTriggerAt = performance.now()
    this.timer = setInterval(() => this.tick(), Math.max(1, Math.min(50, this.o.options.intervalMs / 4)))
  }

  private tick(): void {
    const { intervalMs, minPauseMs, maxConcurrent } = this.o.options
    const now = performance.now()
    if (this.stopped || this.triggering || this.pending.size >= maxConcurrent) return
    if (now - this.lastTriggerAt < intervalMs || now - this.lastEndAt < minPauseMs) return
    void this.trigger()
  }

  /**
   * Triggers a checkpoint now; resolves with it once completed (undefined if aborted). The
   * timeout runs from this call, so a store that never answers `beginSnapshot` cannot hold a
   * checkpoint, or the final one, for ever.
   */
  trigger(): Promise<SnapshotInfo | undefined> {
    const { timeoutMs } = this.o.options
    const t: Trigger = { id: undefined, startedAt: performance.now(), expired: false, resolve: () => {}, timeout: undefined }
    const done = new Promise<SnapshotInfo | undefined>((resolve) => (t.resolve = resolve))
    t.timeout = setTimeout(() => this.expire(t), timeoutMs)
    this.lastTriggerAt = t.startedAt
    // Triggers run one after another so two never take the same id.
    this.beginning = this.beginning.then(() => this.begin(t))
    return done
  }

  /** The timeout of `t` fired: abort its snapshot, or give up on a begin that has not returned. */
  private expire(t: Trigger): void {
    const reason = `timed out after ${this.o.options.timeoutMs} ms`
    if (t.id !== undefined && this.pending.has(t.id)) {
      void this.abort(t.id, reason)
      return
    }
    if (this.stopped) return
    t.expired = true
    this.lastEndAt = performance.now()
    this.failed(t.id ?? this.nextId ?? 0, `${reason} before the store began the snapshot`, undefined)
    t.resolve(undefined)
  }

  /** Begins a snapshot in the store and starts it; `t` settles when it completes or aborts. */
  private async begin(t: Trigger): Promise<void> {
    const { job, store, attempt, layout } = this.o
    if (t.expired || this.stopped) {
      clearTimeout(t.timeout)
      t.resolve(undefined)
      return
    }
    this.triggering = true
    let id: number | undefined
    try {
      // Ask the store every time: a savepoint may have taken an id since the last checkpoint.
      id = Math.max(await store.nextSnapshotId(job), this.nextId ?? 0)
      this.nextId = id + 1
      t.id = id
      await store.beginSnapshot({ job, id, kind: 'checkpoint', attempt, layout, triggeredAt: Date.now() })
    } catch (err) {
      this.triggering = false
      clearTimeout(t.timeout)
      // A trigger that timed out was counted as failed already.
      if (!t.expired) this.failed(id ?? 0, `cannot begin: ${describeThrown(err)}`, err)
      t.resolve(undefined)
      return
    }
    this.triggering = false
    if (this.stopped || t.expired) {
      clearTimeout(t.timeout)
      t.resolve(undefined)
      await store.abortSnapshot(job, id, t.expired ? `timed out after ${this.o.options.timeoutMs} ms` : 'attempt stopped').catch(() => {})
      return
    }
    this.pending.set(id, { id, startedAt: t.startedAt, acked: new Set(), bytes: 0, timeout: t.timeout, resolve: t.resolve })
    this.log.debug('checkpoint triggered', { checkpoint: id })
    try {
      this.target!.triggerCheckpoint(id)
    } catch (err) {
      // Starting a checkpoint runs user code (a finished source's offset()): fail the checkpoint.
      void this.abort(id, `cannot start: ${describeThrown(err)}`, err)
    }
  }

  ack(attempt: number, checkpointId: number, instanceId: string, bytes: number): void {
    const p = this.pending.get(checkpointId)
    // Acks of an old attempt or an aborted checkpoint are dropped (fencing, section 7).
    if (attempt !== this.o.attempt || p === undefined || this.stopped) return
    if (!this.instances.has(instanceId) || p.acked.has(instanceId)) return
    p.acked.add(instanceId)
    p.bytes += bytes
    if (p.acked.size === this.instances.size) {
      const completing = this.complete(p)
      this.completing.add(completing)
      void completing.finally(() => this.completing.delete(completing))
    }
  }

  decline(attempt: number, checkpointId: number, instanceId: string, error: unknown): void {
    if (attempt !== this.o.attempt || !this.pending.has(checkpointId)) return
    void this.abort(checkpointId, `${instanceId} could not write its snapshot: ${(error as Error)?.message ?? String(error)}`, error)
  }

  private async complete(p: Pending): Promise<void> {
    const { job, store } = this.o
    clearTimeout(p.timeout)
    const durationMs = Math.round(performance.now() - p.startedAt)
    let info: SnapshotInfo
    try {
      // The completed mark is the last write of a checkpoint (section 8).
      info = await store.completeSnapshot(job, p.id, { completedAt: Date.now(), durationMs })
    } catch (err) {
      this.pending.delete(p.id)
      this.failed(p.id, `cannot complete: ${describeThrown(err)}`, err)
      p.resolve(undefined)
      return
    }
    this.pending.delete(p.id)
    this.lastEndAt = performance.now()
    this.consecutiveFailures = 0
    this.completedCount++
    this.log.info('checkpoint completed', { checkpoint: p.id, durationMs, bytes: info.sizeBytes ?? p.bytes, size: formatBytes(info.sizeBytes ?? p.bytes) })
    if (!this.stopped) {
      try {
        await this.target?.checkpointCompleted(p.id)
      } catch (err) {
        // The checkpoint is safely stored; a sink that cannot commit fails the job over.
        this.log.error('checkpoint completed but its commit failed', { checkpoint: p.id, error: (err as Error)?.message ?? String(err) })
        this.o.onFailure(err)
      }
    }
    this.o.onCompleted?.(info)
    await this.prune().catch((err: unknown) => this.log.warn('could not discard old checkpoints', { error: (err as Error).message }))
    p.resolve(info)
  }

  private async abort(id: number, reason: string, cause?: unknown): Promise<void> {
    const p = this.pending.get(id)
    if (p === undefined) return
    this.pending.delete(id)
    clearTimeout(p.timeout)
    this.lastEndAt = performance.now()
    this.target?.checkpointAborted(id)
    // Counted before the store hears of it: a store that does not answer must not delay the
    // failover by its own deadline. Settled after, so whoever waits finds the snapshot aborted.
    this.failed(id, reason, cause)
    await this.o.store.abortSnapshot(this.o.job, id, reason).catch(() => {})
    p.resolve(undefined)
  }

  private failed(id: number, reason: string, cause: unknown): void {
    this.#lastFailure = { checkpointId: id, reason }
    this.consecutiveFailures++
    this.log.warn('checkpoint failed', { checkpoint: id, reason, inARow: this.consecutiveFailures })
    // A failure no retry can fix (state the serde cannot write, a lost lease) fails the job as
    // itself, at once: tolerating it would only fail every later checkpoint the same way.
    if (cause instanceof WeirError && !cause.retryable && !this.stopped) {
      this.o.onFailure(cause)
      return
    }
    if (this.consecutiveFailures > this.o.options.tolerableFailures && !this.stopped) {
      this.o.onFailure(new CheckpointFailedError(this.o.job, id, reason, cause))
    }
  }

  /** Keeps the newest `retained` completed checkpoints; savepoints are never pruned. */
  private async prune(): Promise<void> {
    const { job, store, options } = this.o
    const all = await store.listSnapshots(job)
    const completed = all.filter((s) => s.kind === 'checkpoint' && s.status === 'completed')
    const keep = new Set(completed.slice(-options.retained).map((s) => s.id))
    const newest = completed.at(-1)?.id ?? 0
    for (const s of all) {
      if (s.kind !== 'checkpoint' || keep.has(s.id) || this.pending.has(s.id)) continue
      if (s.status === 'completed' || (s.status !== 'pending' && s.id < newest)) await store.discardSnapshot(job, s.id)
    }
  }

  /** Stops periodic triggering; pending checkpoints go on. */
  pause(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Stops triggering; pending checkpoints of this attempt are aborted. */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    // A trigger still beginning its snapshot must settle first, or the next attempt's
    // coordinator could take the same id; a completion in flight must finish its writes.
    await this.beginning
    await Promise.all(this.completing)
    for (const id of [...this.pending.keys()]) {
      const p = this.pending.get(id)!
      clearTimeout(p.timeout)
      this.pending.delete(id)
      p.resolve(undefined)
      await this.o.store.abortSnapshot(this.o.job, id, 'attempt stopped').catch(() => {})
    }
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}
