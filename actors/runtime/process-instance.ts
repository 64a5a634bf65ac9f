/**
 * A keyed operator instance: the user's functions over the key groups of its range, with its
 * state backend, broadcast states, side outputs, messages (docs/architecture.md section 15) and
 * timers (section 17). `process` and `processTimed` are the per-record hot path: synchronous,
 * one loop per batch, no allocation per record.
 */
import type { CheckpointMode } from './alignment.ts'
import type { RecordBatch } from './channel.ts'
import { systemClock, type Clock } from '../time/clock.ts'
import { WeirError } from '../../persistence/errors.ts'
import { asyncResultError, UserCodeError } from '../errors.ts'
import { HeapKeyedBackend } from '../state/heap-backend.ts'
import type { TimerContext } from '../api/contexts.ts'
import type { ProcessSpec } from '../api/graph.ts'
import type { Key, KeyGroupRange } from '../state/key-groups.ts'
import type { EdgeOutput } from './output.ts'
import type { MessageRecorder, Recording } from './message-recording.ts'
import type { MessageSender } from './message-channels.ts'
import { BroadcastStates } from '../state/broadcast-state.ts'
import { encodeOperatorChunk } from '../state/operator-state.ts'
import type { OutputTag } from '../api/side-outputs.ts'
import { KeyedTimerService, TimerStore, type TimeDomain, type TimerOwner } from '../time/timers.ts'
import type { InputChannel, InstanceHost } from './instance.ts'
import { ConsumingInstance } from './consuming-instance.ts'
import { ProcessInstanceContext } from './process-context.ts'

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
  private readonly ctx: ProcessInstanceContext
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
    this.ctx = new ProcessInstanceContext(index, spec.uid, this.keyed, this.emitAll, this.sender, sides)
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
