/**
 * Runs every instance of one job attempt in this process (local mode): schedules them on the
 * event loop in bounded slices, drives checkpoints (trigger, completion, abort) and is the
 * instances' host (docs/architecture.md sections 5 and 6). Wiring the graph into instances is
 * wire-instances.ts, restoring them restore-snapshot.ts, writing their snapshots
 * checkpoint-writer.ts; options and metrics are in executor-options.ts.
 */
import type { InspectionEvent } from 'xstate'
import type { Logger } from './logger.ts'
import { describeValue } from '../errors.ts'
import type { KeyedSnapshot } from '../state/heap-backend.ts'
import type { Instance, InstanceHost } from './instance.ts'
import { ProcessInstance } from './process-instance.ts'
import { SinkInstance } from './sink-instance.ts'
import { SourceInstance } from './source-instance.ts'
import type { InstanceStatus } from './lifecycle.ts'
import type { CycleWatch } from './message-channels.ts'
import type { TimersSnapshot } from '../time/timers.ts'
import type { ExecutorMetrics, ExecutorOptions, InstanceStats } from './executor-options.ts'
import { wireInstances } from './wire-instances.ts'
import { restoreInstances } from './restore-snapshot.ts'
import { CheckpointWriter } from './checkpoint-writer.ts'

/**
 * Channel items (batches) an instance takes per turn: few, so a turn stays short with large
 * state and the slice deadline is checked often.
 */
const CONSUMER_STEP_ITEMS = 4
/** Time per slice spent encoding key groups of a snapshot in progress, before records. */
const ENCODE_SHARE_MS = 2

export class LocalExecutor implements InstanceHost {
  readonly instances: Instance[] = []
  readonly metrics: ExecutorMetrics = { maxSliceMs: 0, maxSnapshotSyncMs: 0, maxEncodeSliceMs: 0 }
  /** Settles when every instance finished (resolves) or one failed (rejects). */
  readonly done: Promise<void>
  private resolveDone!: () => void
  private rejectDone!: (error: unknown) => void
  private readonly sources: SourceInstance[] = []
  private readonly consumers: Instance[] = []
  private readonly writer: CheckpointWriter
  /** Ends message cycles once they are quiet; undefined for jobs without cycles. */
  private cycles: CycleWatch | undefined
  /** Instances with recorded (cyclic) message inputs. */
  private readonly cyclic: ProcessInstance[] = []
  private readonly inFlight = new Set<number>()
  private finishedCount = 0
  private started = false
  /** Fenced: canceled or failed; sends no more acks. */
  private stopped = false
  private settled = false
  // Two fields: clearing a timeout with clearImmediate corrupts Node's count of pending immediates.
  private immediate: NodeJS.Immediate | undefined
  private timeout: NodeJS.Timeout | undefined
  private readonly log: Logger
  /** The instance whose step runs now, for the watchdog. */
  private current: Instance | undefined

  private constructor(private readonly options: ExecutorOptions) {
    this.log = options.logger
    this.writer = new CheckpointWriter({ store: options.store, job: options.graph.name, attempt: options.attempt, acks: options.acks, metrics: this.metrics })
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve
      this.rejectDone = reject
    })
    // The attempt may fail before anyone awaits `done`; the runner always does eventually.
    this.done.catch(() => {})
  }

  /** Builds and opens every instance of the graph. */
  static async create(options: ExecutorOptions): Promise<LocalExecutor> {
    const ex = new LocalExecutor(options)
    await ex.build()
    return ex
  }


  private async build(): Promise<void> {
    const wired = await wireInstances(this.options, this)
    this.instances.push(...wired.instances)
    this.sources.push(...wired.sources)
    this.consumers.push(...wired.consumers)
    this.cyclic.push(...wired.cyclic)
    this.cycles = wired.cycles
  }

  /**
   * Loads every instance's key groups and offsets from snapshot `id`, after verifying it against
   * its manifest. Throws `CorruptSnapshotError` if it fails, or if a key lies in the wrong key group.
   */
  async restore(id: number): Promise<void> {
    const store = this.options.store
    if (store === undefined) throw new Error('restore needs a snapshot store')
    await restoreInstances(this.instances, store, this.options.graph, id)
  }

  /** Starts processing. */
  start(): void {
    this.started = true
    for (const inst of this.instances) inst.lifecycle.send({ type: 'RUN' })
    if (this.options.watchdog !== undefined) this.options.watchdog.describe = () => this.describeCurrent()
    this.schedule(true)
  }

  /** What the slice in progress is doing, for the watchdog: the instance and, if keyed, the key. */
  private describeCurrent(): string {
    const inst = this.current
    if (inst === undefined) return `job ${this.options.graph.name} (between instances: encoding a snapshot or scheduling)`
    if (inst instanceof ProcessInstance) return `operator ${inst.id} key ${describeValue(inst.backend.currentKey)}`
    if (inst instanceof SourceInstance) return `operator ${inst.id} (the source, or a map/filter/flatMap/keyBy chained to it)`
    return `operator ${inst.id}`
  }

  /** Runs a slice soon: a remote channel received items or credit (cluster/remote-channel.ts). */
  wake(): void {
    // Before start() the instances are not restored yet: items wait in their channels.
    if (!this.started) return
    if (this.timeout !== undefined) {
      clearTimeout(this.timeout)
      this.timeout = undefined
    }
    this.schedule(true)
  }

  private schedule(busy: boolean): void {
    if (this.stopped || this.immediate !== undefined || this.timeout !== undefined) return
    if (busy) this.immediate = setImmediate(this.loop)
    else this.timeout = setTimeout(this.loop, 1)
  }

  private readonly loop = (): void => {
    this.immediate = undefined
    this.timeout = undefined
    if (this.stopped) return
    const { batchSize, sliceMs } = this.options.tuning
    const began = performance.now()
    const deadline = began + sliceMs
    let work = 0
    const watchdog = this.options.watchdog
    watchdog?.enter()
    try {
      // Snapshot encoding gets a share of every slice, so the copy-on-write window stays short.
      if (this.writer.encode(ENCODE_SHARE_MS)) work++
      let round: number
      do {
        round = 0
        // Downstream first: drain queues before sources fill them again.
        for (let i = this.consumers.length - 1; i >= 0; i--) round += (this.current = this.consumers[i]!).step(CONSUMER_STEP_ITEMS)
        for (const src of this.sources) round += (this.current = src).step(batchSize)
        this.current = undefined
        work += round
      } while (round > 0 && performance.now() < deadline)
      if (this.writer.encode(Math.max(1, deadline - performance.now()))) work++
      if (this.cycles !== undefined && this.tendCycles()) work++
    } catch (err) {
      this.fail(err)
      return
    } finally {
      this.current = undefined
      watchdog?.leave()
    }
    const took = performance.now() - began
    if (took > this.metrics.maxSliceMs) this.metrics.maxSliceMs = took
    if (this.finishedCount === this.instances.length && this.writer.idle) {
      if (!this.settled) {
        this.settled = true
        this.resolveDone()
      }
      return
    }
    this.schedule(work > 0)
  }

  /**
   * Message cycles (section 15): instances that wait for messages only snapshot the checkpoints
   * in flight they missed, recordings that completed are written, and quiet cycles end.
   * Returns true if it did anything.
   */
  private tendCycles(): boolean {
    let work = false
    if (this.inFlight.size > 0) {
      for (const inst of this.cyclic) {
        if (!inst.snapshotsOnTrigger) continue
        for (const id of [...this.inFlight].sort((a, b) => a - b)) {
          if (id > inst.lastSnapshot) {
            this.snapshotNow(inst, id)
            work = true
          }
        }
      }
    }
    if (this.writer.writeRecorded()) work = true
    return this.cycles!.tend() || work
  }

  /** Starts checkpoint `id` (docs/architecture.md section 6, step 2): sources emit barriers; finished instances snapshot as they are. */
  triggerCheckpoint(id: number): void {
    this.inFlight.add(id)
    for (const inst of this.instances) {
      if (inst.finished) this.snapshotNow(inst, id)
      else if (inst instanceof SourceInstance) inst.injectBarrier(id)
      // Reached only by messages, or its inputs ended while messages circle (section 15).
      else if (inst instanceof ProcessInstance && inst.snapshotsOnTrigger) this.snapshotNow(inst, id)
    }
    this.schedule(true)
  }

  private snapshotNow(inst: Instance, id: number): void {
    const began = performance.now()
    inst.snapshot(id)
    const took = performance.now() - began
    if (took > this.metrics.maxSnapshotSyncMs) this.metrics.maxSnapshotSyncMs = took
  }

  /** Checkpoint `id` completed: sinks may commit what it covers. */
  async checkpointCompleted(id: number): Promise<void> {
    this.inFlight.delete(id)
    for (const inst of this.instances) if (inst instanceof SinkInstance) await inst.writer.checkpointCompleted?.(id)
  }

  /** Checkpoint `id` was aborted: instances that finish from now on need not snapshot it. */
  checkpointAborted(id: number): void {
    this.inFlight.delete(id)
  }

  snapshotTaken(instance: Instance, checkpointId: number, keyed: KeyedSnapshot | undefined, operatorState: unknown, timers?: TimersSnapshot): void {
    const recording = instance instanceof ProcessInstance ? instance.recordingOf(checkpointId) : undefined
    this.writer.add({ instance, id: checkpointId, keyed, operatorState, recording, timers })
  }

  instanceFinished(instance: Instance): void {
    this.finishedCount++
    // A finished instance's state no longer changes: snapshot it for every checkpoint it missed.
    for (const id of [...this.inFlight].sort((a, b) => a - b)) if (id > instance.lastSnapshot) this.snapshotNow(instance, id)
  }

  get inspect(): ((event: InspectionEvent) => void) | undefined {
    return this.options.inspect
  }

  transitioned(instance: Instance, status: InstanceStatus): void {
    const busy = status === 'snapshotting' || status === 'running.processing' || status === 'running.aligning'
    const fields = { instance: instance.id, attempt: this.options.attempt }
    if (busy && instance.lastSnapshot > 0) this.log.debug(`instance -> ${status}`, fields)
    else this.log.info(`instance -> ${status}`, fields)
  }

  /**
   * Records through each operator so far in this attempt, for progress logs: those it took in, or
   * for a source those it sent. After a restore a source's count starts at its restored offset,
   * so the last progress line of a run shows how much of the input that run replayed.
   */
  recordsIn(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const inst of this.sources) out[inst.spec.uid] = (out[inst.spec.uid] ?? 0) + inst.recordsOut
    for (const inst of this.consumers) out[inst.spec.uid] = (out[inst.spec.uid] ?? 0) + inst.recordsIn
    return out
  }

  /** Each local instance's lifecycle state, records in and out, and whether it waits for output credit now. */
  instanceStats(): InstanceStats[] {
    return this.instances.map((inst) => ({ instance: inst.id, status: inst.status, recordsIn: inst.recordsIn, recordsOut: inst.recordsOut, backpressured: !inst.finished && !inst.hasCredit() }))
  }

  private fail(error: unknown): void {
    if (this.stopped) return
    // After every instance finished (`done` already resolved), a failure can only come from
    // encoding the final checkpoint: decline it, or the coordinator would wait for its timeout.
    if (this.settled) this.writer.declinePending(error)
    this.stopped = true
    this.writer.fence()
    this.settled = true
    for (const inst of this.instances) if (!inst.finished) inst.fail(error)
    this.rejectDone(error)
  }

  /** Stops every instance and closes sources and sinks; acks of this attempt are no longer sent. */
  async cancel(): Promise<void> {
    this.stopped = true
    this.writer.fence()
    if (this.immediate !== undefined) clearImmediate(this.immediate)
    if (this.timeout !== undefined) clearTimeout(this.timeout)
    this.immediate = undefined
    this.timeout = undefined
    for (const inst of this.instances) if (!inst.finished) inst.cancel()
    this.settled = true
    this.resolveDone()
    await this.close()
    await this.writer.settle()
  }

  /** Closes sources and sinks (flushing sinks). */
  async close(): Promise<void> {
    for (const inst of this.instances) {
      if (inst instanceof SourceInstance) await inst.reader.close?.()
      else if (inst instanceof SinkInstance) await inst.writer.close?.()
    }
  }
}
