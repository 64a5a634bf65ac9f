/**
 * Runs every instance of one job attempt in this process (local mode): builds the instances and
 * channels, restores them from a snapshot, schedules them on the event loop in bounded slices,
 * and encodes and writes their snapshots off the hot path (docs/architecture.md sections 5 and 6).
 */
import type { InspectionEvent } from 'xstate'
import type { ChunkFilter, SnapshotStore, StateChunk } from '../../persistence/store.ts'
import { KEYED_CHUNK_FORMAT } from '../../persistence/keyed-chunk.ts'
import { CorruptSnapshotError, describeChunk, WeirError } from '../../persistence/errors.ts'
import type { Logger } from './logger.ts'
import type { CheckpointMode } from './alignment.ts'
import { channelFor, type Channel, type Placement } from './channel.ts'
import { describeValue, IncompatibleSnapshotError, MisplacedKeyError } from '../errors.ts'
import type { KeyedSnapshot } from '../state/heap-backend.ts'
import { connectorContext, type Instance, type InstanceHost, type InputChannel } from './instance.ts'
import { ProcessInstance } from './process-instance.ts'
import { SinkInstance } from './sink-instance.ts'
import { SourceInstance } from './source-instance.ts'
import type { JobGraph, SinkSpec } from '../api/graph.ts'
import { keyGroupRange } from '../state/key-groups.ts'
import type { InstanceStatus } from './lifecycle.ts'
import { EdgeOutput } from './output.ts'
import { OperatorProcessInstance } from './operator-process-instance.ts'
import { decodeOperatorChunk, OPERATOR_CHUNK_FORMAT, OperatorListStates, sourceRestoreOffset, type OperatorChunk, type OperatorListStateDescriptor } from '../state/operator-state.ts'
import { writesOperatorChunk } from '../api/graph.ts'
import type { ConnectorContext } from '../connectors/types.ts'
import type { ListState } from '../api/state.ts'
import { buildMessageChannels, CycleWatch, MessageSender, type ChannelLink } from './message-channels.ts'
import { CHANNEL_CHUNK_FORMAT, decodeChannelChunk, MessageRecorder, type Recording } from './message-recording.ts'
import { messageCycles } from './messages.ts'
import type { Watchdog } from './watchdog.ts'
import { systemClock, type Clock } from '../time/clock.ts'
import { TIMERS_CHUNK_FORMAT, type TimersSnapshot } from '../time/timers.ts'

/** Where instances send checkpoint acknowledgements (the checkpoint coordinator). */
export interface CheckpointAcks {
  ack(attempt: number, checkpointId: number, instanceId: string, bytes: number): void
  decline(attempt: number, checkpointId: number, instanceId: string, error: unknown): void
}

/** Tuning of the local executor. */
export interface ExecutorTuning {
  /** Records per batch on a channel. @default 1024 */
  batchSize: number
  /** Batches a channel holds before its sender waits. @default 8 */
  channelCapacity: number
  /** Longest stretch of processing before yielding to timers and I/O, in ms. @default 5 */
  sliceMs: number
}

export const DEFAULT_TUNING: ExecutorTuning = { batchSize: 1024, channelCapacity: 8, sliceMs: 5 }

export interface ExecutorOptions {
  graph: JobGraph
  attempt: number
  store: SnapshotStore | undefined
  mode: CheckpointMode
  acks: CheckpointAcks
  logger: Logger
  tuning: ExecutorTuning
  /** Freeze what state handles return (`RunOptions.strictState`). */
  strictState?: boolean
  /** Told when each slice starts and ends; asks what a stuck slice is doing. */
  watchdog?: Watchdog | undefined
  /** Processing time of timers, state TTL and idleness (`RunOptions.clock`). @default systemClock */
  clock?: Clock | undefined
  /**
   * The instances that run in this process and channels to the others (a cluster node).
   * @default every instance runs here
   */
  placement?: Placement | undefined
  /** XState's inspector for the instances' lifecycle actors (`RunOptions.inspect`). */
  inspect?: ((event: InspectionEvent) => void) | undefined
}

/** Measurements of one attempt. */
export interface ExecutorMetrics {
  /** The longest single slice of work on the event loop, in ms. */
  maxSliceMs: number
  /** The longest synchronous part of a snapshot (all instances), in ms. */
  maxSnapshotSyncMs: number
  /** The longest slice spent encoding key groups, in ms. */
  maxEncodeSliceMs: number
}

/** One instance as `weir status` shows it. */
export interface InstanceStats {
  /** `operator[index]`. */
  instance: string
  /** Its lifecycle state (e.g. `running.processing`, `running.aligning`, `finished`). */
  status: InstanceStatus
  recordsIn: number
  recordsOut: number
  /** True if an output has no credit now: an operator downstream is slower (backpressure). */
  backpressured: boolean
}

interface Upload {
  instance: Instance
  id: number
  keyed: KeyedSnapshot | undefined
  operatorState: unknown
  /** Messages in flight on recorded channels (section 15), complete once their barriers arrived. */
  recording: Recording | undefined
  timers: TimersSnapshot | undefined
}

/**
 * The data of an empty key group, or of a source without an offset. Written anyway, so the
 * snapshot's manifest lists every key group and instance and a missing chunk is always noticed.
 */
const EMPTY_CHUNK = new Uint8Array(0)
/** How long a canceled executor waits for chunk writes in flight. */
const WRITES_GRACE_MS = 5_000

/** Resolves when every promise settled, or after `ms`, whichever comes first. */
async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([Promise.allSettled(promises), new Promise((r) => (timer = setTimeout(r, ms)))])
  clearTimeout(timer)
}
/** Format of an operator-state chunk: see actors/state/operator-state.ts. */
export { OPERATOR_CHUNK_FORMAT }
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
  private readonly uploads: Upload[] = []
  /** Chunk writes still in flight: a canceled executor waits for them, so its run settles after its last write. */
  private readonly writes = new Set<Promise<unknown>>()
  /** Encoded uploads whose message recording is not complete yet. */
  private readonly recordingUploads: Upload[] = []
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
    const { graph, tuning, mode } = this.options
    const clock = this.options.clock ?? systemClock
    // Operators downstream of a source with watermarks carry event times on their edges.
    const timed = new Set<string>()
    for (const op of graph.operators) {
      if (op.kind === 'source' ? op.watermarks !== undefined : graph.edges.some((e) => e.to === op.uid && timed.has(e.from))) timed.add(op.uid)
    }
    // channels[to][toIndex] = list of input channels of that instance
    const inputs = new Map<string, InputChannel[][]>()
    const outputs = new Map<string, EdgeOutput[][]>()
    const links: ChannelLink[] = []
    for (const op of graph.operators) {
      inputs.set(op.uid, Array.from({ length: op.parallelism }, () => []))
      outputs.set(op.uid, Array.from({ length: op.parallelism }, () => []))
    }
    const placement = this.options.placement
    const here = (uid: string, i: number) => placement === undefined || placement.isLocal(uid, i)
    graph.edges.forEach((edge, e) => {
      const from = graph.operators.find((o) => o.uid === edge.from)!
      const to = graph.operators.find((o) => o.uid === edge.to)!
      for (let s = 0; s < from.parallelism; s++) {
        // A forward edge connects instance s to instance s only.
        const receivers = edge.partitioning === 'forward' ? [s] : Array.from({ length: to.parallelism }, (_, r) => r)
        const targets: Channel[] = []
        for (const r of receivers) {
          const c = channelFor(placement, { kind: 'records', edge: e, from: from.uid, fromIndex: s, to: to.uid, toIndex: r }, tuning.channelCapacity)
          if (c === undefined) continue
          targets.push(c)
          if (here(to.uid, r)) inputs.get(to.uid)![r]!.push({ channel: c, input: edge.input })
          links.push({ from: from.uid, fromIndex: s, to: to.uid, channel: c })
        }
        if (here(from.uid, s)) outputs.get(from.uid)![s]!.push(new EdgeOutput(edge, targets, graph.maxParallelism, tuning.batchSize, s, timed.has(from.uid)))
      }
    })
    // Messages (section 15): aligned message inputs after the record inputs, recorded ones last.
    const messages = buildMessageChannels(graph, tuning.channelCapacity, tuning.batchSize, placement)
    links.push(...messages.links)
    for (const op of graph.operators) {
      for (let i = 0; i < op.parallelism; i++) {
        if (!here(op.uid, i)) continue
        const outs = outputs.get(op.uid)![i]!
        const ins = inputs.get(op.uid)![i]!
        const ctx = connectorContext(graph.name, op, i)
        if (op.kind === 'source') {
          const inst = new SourceInstance(op, i, outs, this, await op.source.open(ctx), clock)
          this.sources.push(inst)
          this.instances.push(inst)
        } else if (op.kind === 'process') {
          const messageInput = op.fns.length
          const recorded = messages.recorded.get(op.uid)?.[i] ?? []
          for (const channel of [...(messages.aligned.get(op.uid)?.[i] ?? []), ...recorded]) ins.push({ channel, input: messageInput })
          const targets = messages.outputs.get(op.uid)?.[i]
          const inst = new ProcessInstance(op, i, ins, outs, this, mode, keyGroupRange(i, op.parallelism, graph.maxParallelism), this.options.strictState === true, clock, {
            sender: targets === undefined ? undefined : new MessageSender(op.uid, targets),
            recorder: recorded.length === 0 ? undefined : new MessageRecorder(recorded.length, op.uid),
          })
          if (recorded.length > 0) this.cyclic.push(inst)
          this.consumers.push(inst)
          this.instances.push(inst)
        } else {
          const inst =
            op.kind === 'operator-process'
              ? new OperatorProcessInstance(op, i, ins, outs, this, mode, this.options.strictState === true)
              : await this.openSink(op, i, ins, ctx)
          this.consumers.push(inst)
          this.instances.push(inst)
        }
      }
    }
    const cycles = messageCycles(graph)
    if (cycles.length > 0) this.cycles = new CycleWatch(cycles, links, this.instances, this.cyclic)
  }

  /** Opens a sink instance's writer, with handles to its operator lists if it declares any. */
  private async openSink(op: SinkSpec, i: number, ins: InputChannel[], ctx: ConnectorContext): Promise<SinkInstance> {
    const declared = op.sink.operatorState ?? []
    if (declared.length === 0) return new SinkInstance(op, i, ins, this, this.options.mode, await op.sink.open(ctx))
    const lists = new OperatorListStates(declared, op.uid, this.options.strictState === true)
    const operatorState = <T>(d: OperatorListStateDescriptor<T>): ListState<T> => lists.handle(d as OperatorListStateDescriptor<unknown>) as ListState<T>
    return new SinkInstance(op, i, ins, this, this.options.mode, await op.sink.open({ ...ctx, operatorState }), lists)
  }

  /**
   * Loads every instance's key groups and offsets from snapshot `id`, after verifying it against
   * its manifest. Throws `CorruptSnapshotError` if it fails, or if a key lies in the wrong key group.
   */
  async restore(id: number): Promise<void> {
    const store = this.options.store
    if (store === undefined) throw new Error('restore needs a snapshot store')
    const job = this.options.graph.name
    // Before any state is loaded: the snapshot holds every chunk its manifest lists, unchanged.
    await store.verifySnapshot(job, id)
    // The operator chunks of every old instance of an operator, decoded once: on a rescale an
    // instance's operator state comes from all of them (docs/architecture.md section 16).
    const operatorChunks = new Map<string, Promise<(OperatorChunk | undefined)[]>>()
    const oldChunks = (uid: string) => {
      let p = operatorChunks.get(uid)
      if (p === undefined) {
        p = store.readChunks(job, id, { operatorUid: uid, kind: 'operator' }).then((chunks) => {
          const out: (OperatorChunk | undefined)[] = []
          for (const c of chunks) out[c.index] = decodeOperatorChunk(c.format, c.data)
          return Array.from(out)
        })
        operatorChunks.set(uid, p)
      }
      return p
    }
    // The `channel` chunks of each operator, read once: every instance takes its key groups' messages.
    const recordedMessages = new Map<string, StateChunk[]>()
    for (const inst of this.instances) {
      inst.lifecycle.send({ type: 'RESTORE' })
      const uid = inst.spec.uid
      const read = (filter: ChunkFilter) => store.readChunks(job, id, filter)
      const parallelism = inst.spec.parallelism
      try {
        if (inst instanceof ProcessInstance) {
          const { start, end } = inst.backend.range
          const indexes = Array.from({ length: end - start + 1 }, (_, k) => start + k)
          for (const chunk of await read({ operatorUid: uid, kind: 'keyed', indexes })) {
            if (chunk.format > KEYED_CHUNK_FORMAT) throw new Error(`keyed chunk format ${chunk.format} is newer than this Weir reads`)
            if (chunk.data.byteLength > 0) inst.backend.restoreGroup(chunk.index, chunk.data, this.options.graph.maxParallelism)
          }
          inst.broadcast?.restore(await oldChunks(uid), inst.index)
          // Messages that were in flight on cyclic channels, whichever old instance recorded them
          // (section 15): this instance keeps those of its key groups and processes them first.
          let channelChunks = recordedMessages.get(uid)
          if (channelChunks === undefined) recordedMessages.set(uid, (channelChunks = await read({ operatorUid: uid, kind: 'channel' })))
          for (const chunk of channelChunks) {
            if (chunk.format > CHANNEL_CHUNK_FORMAT) throw new Error(`channel chunk format ${chunk.format} is newer than this Weir reads`)
            const batches = decodeChannelChunk(chunk.data, inst.backend.range)
            if (batches.length > 0 && inst.spec.kind === 'process' && inst.spec.onMessage === undefined) {
              throw new Error('the snapshot holds messages in flight to it, but it has no onMessage any more; give it its onMessage back to restore them')
            }
            inst.restoreMessages(batches)
          }
          // A snapshot taken before the operator had timers simply has none (docs/architecture.md section 17).
          if (inst.timers !== undefined) {
            for (const chunk of await read({ operatorUid: uid, kind: 'timers', indexes })) {
              if (chunk.format > TIMERS_CHUNK_FORMAT) throw new Error(`timers chunk format ${chunk.format} is newer than this Weir reads`)
              if (chunk.data.byteLength > 0) inst.timers.restoreGroup(chunk.index, chunk.data, this.options.graph.maxParallelism)
            }
          }
        } else if (inst instanceof SourceInstance) {
          const rescalable = inst.spec.kind === 'source' && inst.spec.source.rescalable === true
          const restored = sourceRestoreOffset(await oldChunks(uid), inst.index, parallelism, rescalable)
          if (restored !== undefined) await inst.reader.restore?.(restored.offset)
        } else if (inst instanceof OperatorProcessInstance || (inst instanceof SinkInstance && inst.lists !== undefined)) {
          inst.lists!.restore(await oldChunks(uid), inst.index, parallelism)
        }
      } catch (err) {
        if (err instanceof MisplacedKeyError) {
          const chunk = describeChunk({ operatorUid: uid, kind: 'keyed', index: err.keyGroup })
          throw new CorruptSnapshotError(job, id, [`${chunk} holds key ${describeValue(err.key)} of key group ${err.actualKeyGroup} (moved)`], { cause: err })
        }
        if (err instanceof WeirError) throw err
        throw new IncompatibleSnapshotError(`cannot restore ${inst.id}: ${(err as Error).message}`, job, id, uid)
      }
    }
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
      if (this.encodeUploads(ENCODE_SHARE_MS)) work++
      let round: number
      do {
        round = 0
        // Downstream first: drain queues before sources fill them again.
        for (let i = this.consumers.length - 1; i >= 0; i--) round += (this.current = this.consumers[i]!).step(CONSUMER_STEP_ITEMS)
        for (const src of this.sources) round += (this.current = src).step(batchSize)
        this.current = undefined
        work += round
      } while (round > 0 && performance.now() < deadline)
      if (this.encodeUploads(Math.max(1, deadline - performance.now()))) work++
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
    if (this.finishedCount === this.instances.length && this.uploads.length === 0 && this.recordingUploads.length === 0) {
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
    for (let i = 0; i < this.recordingUploads.length; i++) {
      const up = this.recordingUploads[i]!
      if (!up.recording!.complete) continue
      this.recordingUploads.splice(i--, 1)
      this.write(up)
      work = true
    }
    return this.cycles!.tend() || work
  }

  /** Encodes pending key groups for up to `budgetMs`; returns true if there is more to do. */
  private encodeUploads(budgetMs: number): boolean {
    while (this.uploads.length > 0) {
      const up = this.uploads[0]!
      if (up.keyed !== undefined && !up.keyed.complete) {
        const began = performance.now()
        up.instance.backend!.serializeSome(budgetMs)
        const took = performance.now() - began
        if (took > this.metrics.maxEncodeSliceMs) this.metrics.maxEncodeSliceMs = took
        if (!up.keyed.complete) return true
      }
      if (up.timers !== undefined && !up.timers.complete) {
        const began = performance.now()
        up.instance.timers!.encodeSome(budgetMs)
        const took = performance.now() - began
        if (took > this.metrics.maxEncodeSliceMs) this.metrics.maxEncodeSliceMs = took
        if (!up.timers.complete) return true
      }
      this.uploads.shift()
      if (up.recording !== undefined && !up.recording.complete) this.recordingUploads.push(up)
      else this.write(up)
    }
    return false
  }

  private write(up: Upload): void {
    const { store, graph, attempt, acks } = this.options
    const uid = up.instance.spec.uid
    const chunks: StateChunk[] = []
    if (up.keyed !== undefined) {
      const range = up.instance.backend!.range
      const written = new Uint8Array(range.end - range.start + 1)
      for (const g of up.keyed.groups) {
        chunks.push({ operatorUid: uid, kind: 'keyed', index: g.keyGroup, format: KEYED_CHUNK_FORMAT, data: g.data })
        written[g.keyGroup - range.start] = 1
      }
      for (let i = 0; i < written.length; i++) {
        if (written[i] === 0) chunks.push({ operatorUid: uid, kind: 'keyed', index: range.start + i, format: KEYED_CHUNK_FORMAT, data: EMPTY_CHUNK })
      }
    }
    if (up.recording !== undefined) {
      chunks.push({ operatorUid: uid, kind: 'channel', index: up.instance.index, format: CHANNEL_CHUNK_FORMAT, data: up.recording.encode() })
    }
    if (up.timers !== undefined) {
      const range = up.instance.timers!.range
      const written = new Uint8Array(range.end - range.start + 1)
      for (const g of up.timers.groups) {
        chunks.push({ operatorUid: uid, kind: 'timers', index: g.keyGroup, format: TIMERS_CHUNK_FORMAT, data: g.data })
        written[g.keyGroup - range.start] = 1
      }
      for (let i = 0; i < written.length; i++) {
        if (written[i] === 0) chunks.push({ operatorUid: uid, kind: 'timers', index: range.start + i, format: TIMERS_CHUNK_FORMAT, data: EMPTY_CHUNK })
      }
    }
    if (writesOperatorChunk(up.instance.spec)) {
      // Encoded by the instance when it took the snapshot (actors/state/operator-state.ts).
      const data = up.operatorState instanceof Uint8Array ? up.operatorState : EMPTY_CHUNK
      chunks.push({ operatorUid: uid, kind: 'operator', index: up.instance.index, format: OPERATOR_CHUNK_FORMAT, data })
    }
    const written = store === undefined || chunks.length === 0 ? Promise.resolve(0) : store.writeChunks(graph.name, up.id, chunks)
    this.writes.add(written)
    written.then(
      (bytes) => {
        this.writes.delete(written)
        if (!this.stopped) acks.ack(attempt, up.id, up.instance.id, bytes)
      },
      (err: unknown) => {
        this.writes.delete(written)
        if (!this.stopped) acks.decline(attempt, up.id, up.instance.id, err)
      },
    )
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
    this.uploads.push({ instance, id: checkpointId, keyed, operatorState, recording, timers })
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
    if (this.settled) for (const up of [...this.uploads, ...this.recordingUploads]) this.options.acks.decline(this.options.attempt, up.id, up.instance.id, error)
    this.stopped = true
    this.settled = true
    for (const inst of this.instances) if (!inst.finished) inst.fail(error)
    this.rejectDone(error)
  }

  /** Stops every instance and closes sources and sinks; acks of this attempt are no longer sent. */
  async cancel(): Promise<void> {
    this.stopped = true
    if (this.immediate !== undefined) clearImmediate(this.immediate)
    if (this.timeout !== undefined) clearTimeout(this.timeout)
    this.immediate = undefined
    this.timeout = undefined
    for (const inst of this.instances) if (!inst.finished) inst.cancel()
    this.settled = true
    this.resolveDone()
    await this.close()
    // A write already sent is not taken back: wait for it (its checkpoint stays pending and is
    // aborted by the next run), bounded, since a store that does not answer must not hang the job.
    if (this.writes.size > 0) await settledWithin([...this.writes], WRITES_GRACE_MS)
  }

  /** Closes sources and sinks (flushing sinks). */
  async close(): Promise<void> {
    for (const inst of this.instances) {
      if (inst instanceof SourceInstance) await inst.reader.close?.()
      else if (inst instanceof SinkInstance) await inst.writer.close?.()
    }
  }
}
