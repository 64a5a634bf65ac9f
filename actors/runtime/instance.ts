/**
 * Operator instances: the actors of a job. Each has input channels as its mailbox (processed one
 * item at a time, in order), an XState lifecycle, outputs and, for keyed operators, a state
 * backend for its key-group range. All per-record work is synchronous.
 */
import { createActor, type Actor, type InspectionEvent } from 'xstate'
import { BarrierAligner, type AlignmentStep, type CheckpointMode } from './alignment.ts'
import type { Channel, RecordBatch } from './channel.ts'
import { systemClock, type Clock } from '../time/clock.ts'
import type { ConnectorContext, SinkWriter, SourceReader } from '../connectors/types.ts'
import { WeirError } from '../../persistence/errors.ts'
import { asyncResultError, JobDefinitionError, UserCodeError } from '../errors.ts'
import { HeapKeyedBackend, type KeyedSnapshot } from '../state/heap-backend.ts'
import type { ProcessContext, TimerContext, TimerService } from '../api/contexts.ts'
import type { ProcessSpec, OperatorSpec, SourceSpec } from '../api/graph.ts'
import type { Key, KeyGroupRange } from '../state/key-groups.ts'
import { instanceMachine, statusOf, type InstanceStatus } from './lifecycle.ts'
import type { EdgeOutput } from './output.ts'
import type { MessageRecorder, Recording } from './message-recording.ts'
import { undeclaredTarget, type MessageSender } from './message-channels.ts'
import type { StateDescriptor } from '../api/state.ts'
import { BroadcastStates } from '../state/broadcast-state.ts'
import { encodeOperatorChunk, sourceChunk, type OperatorListStates } from '../state/operator-state.ts'
import type { OutputTag } from '../api/side-outputs.ts'
import { KeyedTimerService, TimerStore, type TimeDomain, type TimerOwner, type TimersSnapshot } from '../time/timers.ts'
import { WatermarkTracker } from '../time/watermarks.ts'

/** What an instance reports to the runtime that hosts it. */
export interface InstanceHost {
  /** The synchronous part of a snapshot is done; the host encodes and writes the rest. */
  snapshotTaken(instance: Instance, checkpointId: number, keyed: KeyedSnapshot | undefined, operatorState: unknown, timers?: TimersSnapshot): void
  /** Every input ended and the instance sent end-of-input downstream. */
  instanceFinished(instance: Instance): void
  /** A lifecycle transition, for logs and the supervisor. */
  transitioned(instance: Instance, status: InstanceStatus): void
  /** XState's inspector for the instances' lifecycle actors (`RunOptions.inspect`), if any. */
  readonly inspect?: ((event: InspectionEvent) => void) | undefined
}

/** An input channel and which logical input (0 or 1) of the operator it feeds. */
export interface InputChannel {
  channel: Channel
  input: number
}

export abstract class Instance {
  /** `operator[index]`, unique within the job. */
  readonly id: string
  readonly lifecycle: Actor<typeof instanceMachine>
  finished = false
  /** The newest checkpoint this instance snapshotted. */
  lastSnapshot = 0
  /** Records taken from the inputs so far. */
  recordsIn = 0
  protected readonly emitAll: (record: unknown) => void

  constructor(
    readonly spec: OperatorSpec,
    readonly index: number,
    readonly inputs: readonly InputChannel[],
    readonly outputs: readonly EdgeOutput[],
    protected readonly host: InstanceHost,
  ) {
    this.id = `${spec.uid}[${index}]`
    // The actor's id is the instance's, so an inspector tells the instances apart.
    this.lifecycle = createActor(instanceMachine, host.inspect === undefined ? { id: this.id } : { id: this.id, inspect: host.inspect })
    let last: InstanceStatus | undefined
    this.lifecycle.subscribe((s) => {
      const status = statusOf(s.value)
      if (status !== last) host.transitioned(this, (last = status))
    })
    this.lifecycle.start()
    // Side outputs (docs/architecture.md section 17) only get what ctx.output sends them.
    const outs = outputs.filter((o) => o.edge.tag === undefined).map((o) => o.emit)
    this.emitAll = outs.length === 0 ? () => {} : outs.length === 1 ? outs[0]! : (r) => outs.forEach((emit) => emit(r))
  }

  get status(): InstanceStatus {
    return statusOf(this.lifecycle.getSnapshot().value)
  }

  /** Records sent on all outputs so far (buffered records count once their batch is sent). */
  get recordsOut(): number {
    let n = 0
    for (const o of this.outputs) n += o.sent
    return n
  }

  /** True if every output can take more records (backpressure). */
  hasCredit(): boolean {
    for (const o of this.outputs) if (!o.hasCredit()) return false
    return true
  }

  /** Does up to `budget` units of work; returns how many it did (0: nothing to do now). */
  abstract step(budget: number): number

  /** The state to write as this instance's operator state (e.g. a source offset). */
  protected operatorState(): unknown {
    return undefined
  }

  /** The keyed backend, for keyed operators. */
  get backend(): HeapKeyedBackend | undefined {
    return undefined
  }

  /** The timers, for keyed operators that declare `onTimer`. */
  get timers(): TimerStore | undefined {
    return undefined
  }

  /** True if any output carries event times: the instance sets `timestamp` on them before it emits. */
  protected get timed(): boolean {
    return this.outputs.some((o) => o.timed)
  }

  /** Sets the event time of the records emitted next (docs/architecture.md section 17). */
  protected stamp(time: number): void {
    for (const o of this.outputs) o.timestamp = time
  }

  /** Takes checkpoint `id`: capture state, forward the barrier (docs/architecture.md section 6, step 3). */
  snapshot(id: number): void {
    if (id <= this.lastSnapshot) return
    this.lastSnapshot = id
    const live = !this.finished
    if (live) this.lifecycle.send({ type: 'SNAPSHOT', checkpointId: id })
    const keyed = this.backend?.startSnapshot()
    const timers = this.timers?.startSnapshot()
    const op = this.operatorState()
    if (live) for (const o of this.outputs) o.broadcast({ type: 'barrier', id })
    if (live) this.lifecycle.send({ type: 'SNAPSHOT_TAKEN', checkpointId: id })
    if (timers === undefined) this.host.snapshotTaken(this, id, keyed, op)
    else this.host.snapshotTaken(this, id, keyed, op, timers)
  }

  protected finish(): void {
    if (this.finished) return
    for (const o of this.outputs) o.broadcast({ type: 'end' })
    this.finished = true
    this.lifecycle.send({ type: 'FINISH' })
    this.host.instanceFinished(this)
  }

  cancel(): void {
    this.lifecycle.send({ type: 'CANCEL' })
  }

  fail(error: unknown): void {
    this.lifecycle.send({ type: 'FAIL', error })
  }
}

/** A source instance: polls its reader; emits barriers between polls when asked. */
export class SourceInstance extends Instance {
  private readonly barriers: number[] = []
  /** Emits a record: `emitAll`, or with event time its timestamp and watermark bookkeeping first. */
  private readonly emitRecord: (record: unknown) => void
  private maxTimestamp = -Infinity
  private watermark = -Infinity
  private lastEmitAt = 0
  private idle = false

  constructor(
    spec: OperatorSpec,
    index: number,
    outputs: readonly EdgeOutput[],
    host: InstanceHost,
    readonly reader: SourceReader<unknown>,
    private readonly clock: Clock = systemClock,
  ) {
    super(spec, index, [], outputs, host)
    const strategy = (spec as SourceSpec).watermarks
    if (strategy === undefined) {
      this.emitRecord = this.emitAll
      return
    }
    const timestampOf = strategy.timestamp
    const emitAll = this.emitAll
    this.lastEmitAt = clock.now()
    this.emitRecord = (record) => {
      let t: number
      try {
        t = timestampOf(record)
      } catch (err) {
        throw new UserCodeError(spec.uid, index, undefined, err)
      }
      if (typeof t !== 'number' || !Number.isFinite(t)) {
        throw new UserCodeError(spec.uid, index, undefined, new TypeError(`the watermarks' timestamp function returned ${String(t)}; it must return a finite number of ms`))
      }
      if (t > this.maxTimestamp) this.maxTimestamp = t
      this.stamp(t)
      emitAll(record)
    }
  }

  /** Asks for barrier `id` before the next record. */
  injectBarrier(id: number): void {
    this.barriers.push(id)
  }

  /** The offset, encoded now as an operator chunk (docs/architecture.md section 16). */
  protected override operatorState(): unknown {
    return sourceChunk(this.spec.uid, this.reader.offset(), this.spec.kind === 'source' && this.spec.source.rescalable === true)
  }

  /**
   * After a poll: sends the watermark if it advanced (bounded out-of-orderness), or marks the
   * instance idle after `idleTimeoutMs` without records (docs/architecture.md section 17).
   */
  private emitWatermark(maxOutOfOrdernessMs: number, idleTimeoutMs: number | undefined, polledNothing: boolean): void {
    const wm = this.maxTimestamp - maxOutOfOrdernessMs - 1
    if (!polledNothing) {
      this.lastEmitAt = this.clock.now()
      if (wm > this.watermark || this.idle) {
        if (wm > this.watermark) this.watermark = wm
        this.idle = false
        for (const o of this.outputs) o.broadcast({ type: 'watermark', time: this.watermark })
      }
      return
    }
    if (idleTimeoutMs !== undefined && !this.idle && this.clock.now() - this.lastEmitAt >= idleTimeoutMs) {
      this.idle = true
      for (const o of this.outputs) o.broadcast({ type: 'watermark', time: this.watermark, idle: true })
    }
  }

  step(budget: number): number {
    let work = 0
    while (this.barriers.length > 0) {
      this.snapshot(this.barriers.shift()!)
      work++
    }
    if (this.finished || !this.hasCredit()) return work
    let result
    try {
      result = this.reader.poll(this.emitRecord, budget)
    } catch (err) {
      throw err instanceof WeirError ? err : new UserCodeError(this.spec.uid, this.index, undefined, err)
    }
    const strategy = (this.spec as SourceSpec).watermarks
    if (strategy !== undefined && result !== 'end') this.emitWatermark(strategy.maxOutOfOrdernessMs, strategy.idleTimeoutMs, result === 'idle')
    for (const o of this.outputs) o.flush()
    if (result === 'end') this.finish()
    return result === 'idle' ? work : work + 1
  }
}

/** Shared input handling of operators with input channels. */
export abstract class ConsumingInstance extends Instance {
  private readonly aligner: BarrierAligner
  private nextChannel = 0
  /**
   * Input channels that close a message cycle (docs/architecture.md section 15), the last
   * `recorder.channels` of `inputs`: never aligned, recorded between snapshot and barrier.
   */
  protected readonly recorder: MessageRecorder | undefined
  /** Messages restored from the snapshot's `channel` chunks, processed before any input. */
  protected replay: RecordBatch[] | undefined
  /** The input index `process` handles messages as. */
  protected messageInput = -1
  /** The watermark over the input channels (docs/architecture.md section 17). */
  protected readonly watermarks: WatermarkTracker
  /** Some input sent a watermark: the stream has event time, forward ours. */
  private eventTime = false
  /** Every open input is idle (in event time), and downstream was told so. */
  private inputsIdle = false

  constructor(spec: OperatorSpec, index: number, inputs: readonly InputChannel[], outputs: readonly EdgeOutput[], host: InstanceHost, mode: CheckpointMode, recorder?: MessageRecorder) {
    super(spec, index, inputs, outputs, host)
    this.recorder = recorder
    this.aligner = new BarrierAligner(inputs.length - (recorder?.channels ?? 0), mode)
    this.watermarks = new WatermarkTracker(inputs.length)
  }

  protected abstract process(batch: RecordBatch, input: number): void

  /** True while the instance takes its snapshots when a checkpoint is triggered, like a source: it waits for messages only. */
  get snapshotsOnTrigger(): boolean {
    return this.recorder !== undefined && !this.finished && this.aligner.allEnded
  }

  /** False while restored messages wait to be processed. */
  get idle(): boolean {
    return this.replay === undefined
  }

  /** The executor saw the instance's message cycle go quiet: its recorded channels end (section 15). */
  endMessages(): void {
    if (this.recorder === undefined || this.finished) return
    for (let c = 0; c < this.recorder.channels; c++) this.recorder.onEnd(c)
    if (this.aligner.allEnded) this.finish()
  }

  /**
   * The instance's watermark advanced to `time`: fire what it makes due, then forward it
   * downstream (docs/architecture.md section 17). Runs in the executor's slice, between batches.
   */
  protected watermarkAdvanced(time: number): void {
    if (this.eventTime) for (const o of this.outputs) o.broadcast({ type: 'watermark', time })
  }

  step(budget: number): number {
    if (this.finished) return 0
    let work = 0
    if (this.replay !== undefined) work += this.replayMessages()
    const n = this.inputs.length
    const aligned = this.aligner.channels
    // One item per channel in turn, so no input starves another.
    for (let round = 0; work < budget && this.hasCredit(); round++) {
      let took = false
      for (let k = 0; k < n && !this.finished; k++) {
        const c = (this.nextChannel + k) % n
        if (c >= aligned) {
          if (this.takeRecorded(c, c - aligned)) {
            took = true
            work++
          }
          continue
        }
        if (this.aligner.isHeld(c)) continue
        const { channel, input } = this.inputs[c]!
        const item = channel.shift()
        if (item === undefined) continue
        took = true
        work++
        if (item.type === 'records') {
          this.recordsIn += item.records.length
          if (this.eventTime) this.watermarks.onActive(c)
          this.process(item, input)
        }
        else if (item.type === 'watermark') {
          this.eventTime = true
          const advanced = this.watermarks.onWatermark(c, item.time, item.idle === true)
          if (advanced !== undefined) this.watermarkAdvanced(advanced)
          // All inputs idle: this instance is idle downstream too, until an input is active again.
          if (this.watermarks.allIdle !== this.inputsIdle) {
            this.inputsIdle = !this.inputsIdle
            const time = this.watermarks.current
            for (const o of this.outputs) o.broadcast(this.inputsIdle ? { type: 'watermark', time, idle: true } : { type: 'watermark', time })
          }
        }
        else if (item.type === 'barrier') this.aligned(this.aligner.onBarrier(c, item.id), item.id)
        else {
          this.aligned(this.aligner.onEnd(c), undefined)
          const advanced = this.watermarks.onEnd(c)
          // End of input is a final +Infinity watermark: every event-time timer fires first.
          if (advanced !== undefined) this.watermarkAdvanced(advanced)
          if (this.aligner.allEnded && (this.recorder === undefined || this.recorder.allEnded)) {
            for (const o of this.outputs) o.flush()
            this.finish()
          }
        }
      }
      this.nextChannel = (this.nextChannel + 1) % n
      if (!took) break
    }
    for (const o of this.outputs) o.flush()
    return work
  }

  /** One item of recorded channel `r` (input `c`), unless it is set aside for a snapshot not taken yet. */
  private takeRecorded(c: number, r: number): boolean {
    const recorder = this.recorder!
    if (recorder.isHeld(r)) return false
    const { channel, input } = this.inputs[c]!
    const item = channel.shift()
    if (item === undefined) return false
    if (item.type === 'records') {
      recorder.onRecords(r, item)
      this.recordsIn += item.records.length
      this.process(item, input)
    } else if (item.type === 'barrier') recorder.onBarrier(r, item.id)
    else recorder.onEnd(r)
    return true
  }

  private replayMessages(): number {
    const batches = this.replay!
    this.replay = undefined
    for (const b of batches) {
      this.recordsIn += b.records.length
      this.process(b, this.messageInput)
    }
    return batches.length
  }

  private aligned(step: AlignmentStep, barrier: number | undefined): void {
    if (step.aborted !== undefined) this.lifecycle.send({ type: 'ALIGN_ABORTED', checkpointId: step.aborted })
    if (step.snapshot !== undefined) this.snapshot(step.snapshot)
    else if (barrier !== undefined && this.aligner.aligning === barrier) this.lifecycle.send({ type: 'ALIGN', checkpointId: barrier })
  }
}

class Context implements ProcessContext<Key, unknown> {
  key: Key = ''
  /** Set on a keyed operator connected to a broadcast stream (actors/state/broadcast-state.ts). */
  broadcast: BroadcastStates | undefined
  timestamp: number | undefined = undefined
  /** Set while `onTimer` runs (then this is the TimerContext). */
  timeDomain: TimeDomain | undefined = undefined
  timers: TimerService = undefined as unknown as TimerService
  private lastDescriptor: StateDescriptor | undefined
  private lastHandle: unknown

  constructor(
    readonly instance: number,
    private readonly operator: string,
    private readonly backend: HeapKeyedBackend,
    readonly emit: (record: unknown) => void,
    private readonly messages: MessageSender | undefined,
    /** Emit functions of the side outputs, by tag id. */
    private readonly sideOutputs: ReadonlyMap<string, (record: unknown) => void>,
  ) {}

  send(operator: string, key: Key, message: unknown): void {
    if (this.messages === undefined) throw undeclaredTarget(this.operator, operator, [])
    this.messages.send(operator, key, message)
  }

  output<T>(tag: OutputTag<T>, record: T): void {
    if (typeof tag !== 'object' || tag === null || typeof tag.id !== 'string') throw new TypeError('ctx.output needs a tag from outputTag(id)')
    // A tag no stream reads is emitted nowhere (Flink).
    this.sideOutputs.get(tag.id)?.(record)
  }

  state<D extends StateDescriptor>(descriptor: D): never {
    if (descriptor !== this.lastDescriptor) {
      const handle = this.backend.handle(descriptor)
      if (handle === undefined) {
        const name = (descriptor as { name?: unknown })?.name
        throw new JobDefinitionError(`ctx.state(${String(name)}): declare the state in process('${this.operator}', { state: { ... } })`, undefined, this.operator)
      }
      this.lastDescriptor = descriptor
      this.lastHandle = handle
    }
    return this.lastHandle as never
  }

  /** Read-only broadcast state, for `processElement` (docs/architecture.md section 16). */
  broadcastState(descriptor: unknown): unknown {
    if (this.broadcast === undefined) throw new JobDefinitionError('ctx.broadcastState: this operator is not connected to a broadcast stream (keyed.connect(stream.broadcast(state)))', undefined, this.operator)
    return this.broadcast.readOnly(descriptor)
  }
}

/**
 * How a keyed instance takes part in messages (docs/architecture.md section 15). Its message
 * input channels come last in `inputs`, the recorded ones at the very end, with input index
 * `spec.fns.length` (the `onMessage` handler).
 */
export interface InstanceMessages {
  /** Its message outputs, behind `ctx.send`. */
  sender: MessageSender | undefined
  /** Its recorded (cyclic) input channels, if any. */
  recorder: MessageRecorder | undefined
}

/** A keyed operator instance: user functions over the key groups of its range. */
export class ProcessInstance extends ConsumingInstance implements TimerOwner {
  private readonly keyed: HeapKeyedBackend
  private readonly ctx: Context
  private readonly fns: ProcessSpec['fns']
  /** The broadcast states, if input 1 is a broadcast stream. */
  readonly broadcast: BroadcastStates | undefined
  private readonly sender: MessageSender | undefined
  /** The recording of the newest snapshot, for the host to write with it. */
  private lastRecording: Recording | undefined
  private readonly timerStore: TimerStore | undefined
  private readonly isTimed: boolean

  constructor(
    spec: ProcessSpec,
    index: number,
    inputs: readonly InputChannel[],
    outputs: readonly EdgeOutput[],
    host: InstanceHost,
    mode: CheckpointMode,
    range: KeyGroupRange,
    strictState = false,
    readonly clock: Clock = systemClock,
    messages?: InstanceMessages,
  ) {
    super(spec, index, inputs, outputs, host, mode, messages?.recorder)
    this.keyed = new HeapKeyedBackend(spec.states, range, { operator: spec.uid, strictState, clock })
    this.sender = messages?.sender
    const sides = new Map<string, (record: unknown) => void>()
    for (const o of outputs) {
      const tag = o.edge.tag
      if (tag === undefined) continue
      const prev = sides.get(tag)
      sides.set(tag, prev === undefined ? o.emit : (r) => (prev(r), o.emit(r)))
    }
    this.ctx = new Context(index, spec.uid, this.keyed, this.emitAll, this.sender, sides)
    this.fns = spec.onMessage === undefined ? spec.fns : [...spec.fns, spec.onMessage]
    this.messageInput = spec.fns.length
    if (spec.broadcast !== undefined) this.ctx.broadcast = this.broadcast = new BroadcastStates(spec.broadcast, spec.uid, index, this.emitAll, strictState)
    // Messages carry no event time: their channels never hold the watermark back.
    inputs.forEach((c, k) => {
      if (c.input === this.messageInput) this.watermarks.ignore(k)
    })
    this.timerStore = spec.onTimer === undefined ? undefined : new TimerStore(range)
    this.ctx.timers = new KeyedTimerService(this, this.timerStore, spec.uid)
    this.isTimed = this.timed
  }

  override get backend(): HeapKeyedBackend {
    return this.keyed
  }

  /** The broadcast states, encoded now as an operator chunk. */
  protected override operatorState(): unknown {
    return this.broadcast === undefined ? undefined : encodeOperatorChunk({ broadcast: this.broadcast.snapshot() })
  }

  /** The messages recorded for snapshot `id` (section 15), complete once every recorded channel delivered its barrier. */
  recordingOf(id: number): Recording | undefined {
    return this.lastRecording?.checkpointId === id ? this.lastRecording : undefined
  }

  /** Restored in-flight messages of this instance's key groups, processed before any input. */
  restoreMessages(batches: RecordBatch[]): void {
    if (batches.length > 0) this.replay = [...(this.replay ?? []), ...batches]
  }

  override hasCredit(): boolean {
    return super.hasCredit() && (this.sender === undefined || this.sender.hasCredit())
  }


  override snapshot(id: number): void {
    if (id <= this.lastSnapshot) return
    // Before the host takes the snapshot: it writes the recording that starts here.
    if (this.recorder !== undefined) {
      this.lastRecording = this.recorder.onSnapshot(id)
      if (this.replay !== undefined) this.recorder.recordPending(this.lastRecording, this.replay)
    }
    const live = !this.finished
    super.snapshot(id)
    if (live) this.sender?.broadcast({ type: 'barrier', id })
  }

  override get timers(): TimerStore | undefined {
    return this.timerStore
  }

  /** {@link TimerOwner}: the key in hand. */
  get currentKey(): Key {
    return this.keyed.currentKey
  }

  get currentIndex(): number {
    return this.keyed.currentIndex
  }

  get watermark(): number {
    return this.watermarks.current
  }

  override step(budget: number): number {
    // Processing-time timers due now fire first, in the executor's slice like records.
    const fired = this.timerStore === undefined || this.finished ? 0 : this.fireTimers('processing-time', this.clock.now())
    const work = fired + super.step(budget)
    this.sender?.flush()
    return work
  }

  protected override watermarkAdvanced(time: number): void {
    if (this.timerStore !== undefined) this.fireTimers('event-time', time)
    super.watermarkAdvanced(time)
  }

  protected override finish(): void {
    if (this.finished) return
    // Processing-time timers still pending at the end of input are dropped (Flink).
    this.timerStore?.clear('processing-time')
    this.sender?.broadcast({ type: 'end' })
    super.finish()
  }

  /**
   * The instance's message cycle went quiet with every input ended (docs/architecture.md section
   * 15): event-time timers still pending (registered by messages after the final watermark, or on
   * an operator reached only by messages, which has no watermark) fire now, as at a final
   * watermark. Returns how many fired; what they send keeps the cycle going.
   */
  fireFinalTimers(): number {
    if (this.timerStore === undefined || this.finished) return 0
    const fired = this.fireTimers('event-time', Infinity)
    if (fired > 0) {
      for (const o of this.outputs) o.flush()
      this.sender?.flush()
    }
    return fired
  }

  /**
   * Fires every timer of `domain` with time <= `upTo`, each with its key and state bound
   * (docs/architecture.md section 17). Returns how many fired. The seam a test harness drives:
   * `fireTimers('processing-time', clock.now())`, or a watermark through `watermarkAdvanced`.
   */
  fireTimers(domain: TimeDomain, upTo: number): number {
    const store = this.timerStore!
    const onTimer = (this.spec as ProcessSpec).onTimer!
    const backend = this.keyed
    const ctx = this.ctx
    const timed = this.isTimed
    let fired = 0
    for (let due = store.pollDue(domain, upTo); due !== undefined; due = store.pollDue(domain, upTo)) {
      backend.currentKey = due.key
      backend.currentIndex = due.index
      ctx.key = due.key
      ctx.timestamp = due.time
      ctx.timeDomain = domain
      // Records emitted by an event-time timer carry its time; a processing-time timer's carry none (NaN).
      if (timed) this.stamp(domain === 'event-time' ? due.time : NaN)
      let returned: unknown
      try {
        returned = onTimer(due.time, ctx as unknown as TimerContext<Key, unknown>) as unknown
      } catch (err) {
        if (err instanceof WeirError) throw err
        throw new UserCodeError(this.spec.uid, this.index, due.key, err)
      } finally {
        ctx.timeDomain = undefined
      }
      if (returned !== undefined) {
        const error = asyncResultError(returned, this.spec.uid, this.index, due.key)
        if (error !== undefined) throw error
      }
      fired++
    }
    return fired
  }

  protected process(batch: RecordBatch, input: number): void {
    if (input === 1 && this.broadcast !== undefined) return this.broadcast.process(batch.records, batch.timestamps, (t) => this.stamp(t))
    if (batch.timestamps !== undefined) return this.processTimed(batch, batch.timestamps, input)
    this.ctx.timestamp = undefined
    // A union of a stream with event time and one without: these records carry none onward.
    if (this.isTimed) this.stamp(NaN)
    const fn = this.fns[input]!
    const { records, keys, groups } = batch
    const backend = this.keyed
    const start = backend.range.start
    const ctx = this.ctx
    let i = 0
    try {
      for (; i < records.length; i++) {
        const key = keys![i]!
        backend.currentKey = key
        backend.currentIndex = groups![i]! - start
        ctx.key = key
        const returned = fn(records[i], ctx) as unknown
        if (returned !== undefined) {
          const error = asyncResultError(returned, this.spec.uid, this.index, key)
          if (error !== undefined) throw error
        }
      }
    } catch (err) {
      // Weir's own errors (a transform's, a key selector's, a definition mistake) name their cause.
      if (err instanceof WeirError) throw err
      throw new UserCodeError(this.spec.uid, this.index, keys![i], err)
    }
  }

  /** `process` on a stream with event time: timestamps into ctx and onto outputs; late records. */
  private processTimed(batch: RecordBatch, timestamps: number[], input: number): void {
    const fn = this.fns[input]!
    const { records, keys, groups } = batch
    const backend = this.keyed
    const start = backend.range.start
    const ctx = this.ctx
    const timed = this.isTimed
    const late = (this.spec as ProcessSpec).lateRecords
    const watermark = this.watermarks.current
    let i = 0
    try {
      for (; i < records.length; i++) {
        const key = keys![i]!
        const t = timestamps[i]!
        if (late !== undefined && t <= watermark) {
          if (late === 'drop') continue
          if (timed) this.stamp(t)
          ctx.output(late as OutputTag<unknown>, records[i])
          continue
        }
        backend.currentKey = key
        backend.currentIndex = groups![i]! - start
        ctx.key = key
        ctx.timestamp = t === t ? t : undefined
        if (timed) this.stamp(t)
        const returned = fn(records[i], ctx) as unknown
        if (returned !== undefined) {
          const error = asyncResultError(returned, this.spec.uid, this.index, key)
          if (error !== undefined) throw error
        }
      }
    } catch (err) {
      if (err instanceof WeirError) throw err
      throw new UserCodeError(this.spec.uid, this.index, keys![i], err)
    }
  }
}

/** A sink instance: hands batches to its writer. */
export class SinkInstance extends ConsumingInstance {
  constructor(
    spec: OperatorSpec,
    index: number,
    inputs: readonly InputChannel[],
    host: InstanceHost,
    mode: CheckpointMode,
    readonly writer: SinkWriter<unknown>,
    /** The writer's operator lists, if the sink declares `operatorState` (docs/architecture.md section 16). */
    readonly lists?: OperatorListStates,
  ) {
    super(spec, index, inputs, [], host, mode)
  }

  protected override operatorState(): unknown {
    return this.lists === undefined ? undefined : encodeOperatorChunk({ lists: this.lists.snapshot() })
  }

  protected process(batch: RecordBatch): void {
    try {
      this.writer.write(batch.records)
    } catch (err) {
      throw err instanceof WeirError ? err : new UserCodeError(this.spec.uid, this.index, undefined, err)
    }
  }
}

export function connectorContext(job: string, spec: OperatorSpec, index: number): ConnectorContext {
  return { job, operator: spec.uid, instance: index, parallelism: spec.parallelism }
}
