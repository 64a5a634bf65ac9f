/**
 * The window operator (docs/architecture.md section 14): `keyed.window(assigner)` followed by
 * `reduce`, `aggregate` or `process` adds an ordinary keyed `process` operator whose function
 * and `onTimer` are generated here. Every window's contents are keyed state of that operator and
 * its firing and clean-up are timers, so checkpoints, restores and rescaling need nothing of
 * their own.
 *
 * State of a window operator, per key:
 * * `windows`: map state, window end -> window start, the key's open windows (a key's windows of
 *   one assigner differ in their end: tumbling and sliding windows have one size, and sessions
 *   are apart);
 * * `window-contents`: map state, window end -> the reduced value or accumulator (`reduce`,
 *   `aggregate`); or `window-elements`: list state of `[timestamp, record]` (`process`), each
 *   record once however many windows hold it, a window's records being those with
 *   `start <= timestamp < end`.
 *
 * Timers, per key: an event-time timer at `end - 1` fires a window; one at `end - 1 + lateness`
 * clears it (the same timer when there is no lateness). Processing-time windows fire and clear
 * at `end - 1` on the processing-time clock; an event-time timer at `END_OF_INPUT` fires the
 * windows still open when the input ends (its watermark is +Infinity).
 */
import { asyncResultError, describeValue, JobDefinitionError, rejectAsync } from './errors.ts'
import type { KeyedStream, OperatorOptions, ProcessContext, ProcessOptions, Stream } from './job.ts'
import type { Key } from './key-groups.ts'
import { listState, mapState, type Aggregator, type ListState, type MapState } from './state.ts'
import { isWindowAssigner, mergeSession, windowStart, type TimeWindow, type WindowAssigner } from './windows.ts'

// ---- The timers and side-output contract of issue 7 (helper `time`); replaced by its types when it lands.
interface TimerService {
  currentProcessingTime(): number
  currentWatermark(): number
  registerEventTimeTimer(time: number): void
  registerProcessingTimeTimer(time: number): void
  deleteEventTimeTimer(time: number): void
  deleteProcessingTimeTimer(time: number): void
}
/** A side output of an operator, made by `outputTag(id)`. */
export interface OutputTag<T> {
  readonly id: string
  readonly __type?: T
}
interface TimedContext<K extends Key, OUT> extends ProcessContext<K, OUT> {
  readonly timestamp: number | undefined
  readonly timers: TimerService
  output<X>(tag: OutputTag<X>, record: X): void
}
interface TimerContext<K extends Key, OUT> extends TimedContext<K, OUT> {
  readonly timeDomain: 'event-time' | 'processing-time'
}
// ----

/** The record a window operator emits per firing unless `result` says otherwise. */
export interface WindowResult<K extends Key, R> {
  readonly key: K
  readonly window: TimeWindow
  readonly value: R
}

/** Options of `reduce`, `aggregate` and `process` on a {@link WindowedStream}. */
export interface WindowOptions<K extends Key, R, OUT> extends OperatorOptions {
  /**
   * Builds the record emitted when a window fires from the key, the window and its value.
   * @default (key, window, value) => ({ key, window, value })
   */
  result?: (key: K, window: TimeWindow, value: R) => OUT
}

/**
 * An {@link Aggregator} for windows. Session windows merge, and so must their accumulators:
 * `aggregate` over session windows needs `merge`.
 */
export interface WindowAggregator<IN, ACC, OUT> extends Aggregator<IN, ACC, OUT> {
  /** Combines the accumulators of two windows that merge (session windows); `a` is the earlier window's. */
  merge?(a: ACC, b: ACC): ACC
}

/** A full window function: gets every record of a window when it fires (in arrival order) and returns its value. */
export type WindowFunction<T, K extends Key, R> = (key: K, window: TimeWindow, records: readonly T[]) => R

/**
 * The event-time timer that fires processing-time windows still open at the end of the input,
 * whose watermark is +Infinity. No event-time watermark of a real job comes near it.
 */
export const END_OF_INPUT = Number.MAX_SAFE_INTEGER

export type WindowContents = { kind: 'reduce'; reduce: (a: unknown, b: unknown) => unknown } | { kind: 'aggregate'; aggregator: WindowAggregator<unknown, unknown, unknown> } | { kind: 'process'; fn: WindowFunction<unknown, Key, unknown> }

export interface WindowSpec {
  operator: string
  assigner: WindowAssigner
  lateness: number
  lateTag: OutputTag<unknown> | undefined
  contents: WindowContents
  result: ((key: Key, window: TimeWindow, value: unknown) => unknown) | undefined
}

/**
 * A keyed stream grouped into windows. Made by `keyedStream.window(assigner)`; ends with
 * {@link WindowedStream.reduce}, {@link WindowedStream.aggregate} or {@link WindowedStream.process}.
 */
export class WindowedStream<T, K extends Key> {
  /** @internal */
  constructor(
    private readonly keyed: KeyedStream<T, K>,
    readonly assigner: WindowAssigner,
    private readonly lateness = 0,
    private readonly lateTag: OutputTag<T> | undefined = undefined,
  ) {
    if (!isWindowAssigner(assigner)) {
      throw new JobDefinitionError('window needs a window assigner, e.g. tumblingEventTimeWindows(60_000)', keyed.job.name)
    }
  }

  /**
   * Keeps each event-time window's state `ms` past its end, as Flink does: a record that arrives
   * after the window fired but before the watermark passes `end - 1 + ms` is added and the window
   * fires again with the updated value. Later records are late: they go to {@link lateOutput}, or
   * are dropped.
   * @default 0
   */
  allowedLateness(ms: number): WindowedStream<T, K> {
    if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) {
      throw new JobDefinitionError(`allowedLateness must be a whole number of milliseconds >= 0, got ${String(ms)}`, this.keyed.job.name)
    }
    if (this.assigner.domain !== 'event-time') throw new JobDefinitionError('allowedLateness applies to event-time windows only; processing-time windows have no late records', this.keyed.job.name)
    return new WindowedStream(this.keyed, this.assigner, ms, this.lateTag)
  }

  /**
   * Sends records too late for every window they belong to (the watermark passed the window's
   * end - 1 + allowed lateness) to the side output `tag` instead of dropping them. Read them with
   * `.sideOutput(tag)` on the stream the window operator returns.
   * @example
   * const late = outputTag<Reading>('late-readings')
   * const perMinute = readings.keyBy((r) => r.sensor).window(tumblingEventTimeWindows(60_000)).lateOutput(late).reduce('max', (a, b) => (a.value > b.value ? a : b))
   * perMinute.sideOutput(late).sink('late', fileSink({ path: 'late.ndjson' }))
   */
  lateOutput(tag: OutputTag<T>): WindowedStream<T, K> {
    if (typeof tag !== 'object' || tag === null || typeof tag.id !== 'string') throw new JobDefinitionError('lateOutput needs an output tag, e.g. outputTag<Reading>("late")', this.keyed.job.name)
    if (this.assigner.domain !== 'event-time') throw new JobDefinitionError('lateOutput applies to event-time windows only; processing-time windows have no late records', this.keyed.job.name)
    return new WindowedStream(this.keyed, this.assigner, this.lateness, tag)
  }

  /**
   * Reduces each window's records with `reduce` as they arrive (one value per window in state)
   * and emits the value when the window fires. For session windows, the values of merging
   * windows are combined with `reduce` too.
   * @example
   * // total per account and hour, by event time
   * payments.keyBy((p) => p.account).window(tumblingEventTimeWindows(3_600_000)).reduce('hourly', (a, b) => ({ ...b, cents: a.cents + b.cents }))
   */
  reduce<OUT = WindowResult<K, T>>(name: string, reduce: (a: T, b: T) => T, options: WindowOptions<K, T, OUT> = {}): Stream<OUT> {
    this.checkFunction(reduce, 'reduce needs a function (a, b) => reduced', name)
    return this.build(name, { kind: 'reduce', reduce: reduce as (a: unknown, b: unknown) => unknown }, options)
  }

  /**
   * Folds each window's records into an accumulator as they arrive and emits `getResult` of it
   * when the window fires. Accumulators are keyed state: plain data, never changed in place
   * (`add` returns the next one). Session windows need `merge`.
   * @example
   * const average: WindowAggregator<Reading, { sum: number; n: number }, number> = {
   *   createAccumulator: () => ({ sum: 0, n: 0 }),
   *   add: (a, r) => ({ sum: a.sum + r.value, n: a.n + 1 }),
   *   getResult: (a) => a.sum / a.n,
   *   merge: (a, b) => ({ sum: a.sum + b.sum, n: a.n + b.n }),
   * }
   * readings.keyBy((r) => r.sensor).window(tumblingEventTimeWindows(60_000)).aggregate('avg', average)
   */
  aggregate<ACC, R, OUT = WindowResult<K, R>>(name: string, aggregator: WindowAggregator<T, ACC, R>, options: WindowOptions<K, R, OUT> = {}): Stream<OUT> {
    if (typeof aggregator !== 'object' || aggregator === null) throw new JobDefinitionError('aggregate needs an aggregator { createAccumulator, add, getResult, merge? }', this.keyed.job.name, name)
    for (const fn of ['createAccumulator', 'add', 'getResult'] as const) this.checkFunction(aggregator[fn], `the aggregator needs ${fn}()`, name)
    if (aggregator.merge !== undefined) this.checkFunction(aggregator.merge, 'the aggregator merge must be a function (a, b) => merged', name)
    else if (this.assigner.kind === 'session') throw new JobDefinitionError('session windows merge, so their aggregator needs merge(a, b) to combine two accumulators', this.keyed.job.name, name)
    return this.build(name, { kind: 'aggregate', aggregator: aggregator as WindowAggregator<unknown, unknown, unknown> }, options)
  }

  /**
   * Keeps every record of each window (list state) and calls `fn` with all of them when the
   * window fires; emits what it returns. Costs memory per record: prefer `reduce` or `aggregate`
   * when the value can be computed incrementally.
   * @example
   * clicks.keyBy((c) => c.user).window(eventTimeSessionWindows(30 * 60_000))
   *   .process('sessions', (user, window, clicks) => ({ pages: new Set(clicks.map((c) => c.page)).size }))
   */
  process<R, OUT = WindowResult<K, R>>(name: string, fn: WindowFunction<T, K, R>, options: WindowOptions<K, R, OUT> = {}): Stream<OUT> {
    this.checkFunction(fn, 'process needs a window function (key, window, records) => value', name)
    return this.build(name, { kind: 'process', fn: fn as WindowFunction<unknown, Key, unknown> }, options)
  }

  private checkFunction(fn: unknown, problem: string, operator: string): void {
    if (typeof fn !== 'function') throw new JobDefinitionError(problem, this.keyed.job.name, operator)
    rejectAsync(fn, 'a window function', this.keyed.job.name, operator)
  }

  private build<OUT>(name: string, contents: WindowContents, options: WindowOptions<K, never, OUT>): Stream<OUT> {
    if (typeof options !== 'object' || options === null) throw new JobDefinitionError('window options must be an object', this.keyed.job.name, name)
    const { result, ...rest } = options as WindowOptions<Key, unknown, unknown>
    if (result !== undefined) this.checkFunction(result, 'result must be a function (key, window, value) => record', name)
    const logic = new WindowLogic({
      operator: name,
      assigner: this.assigner,
      lateness: this.lateness,
      lateTag: this.lateTag as OutputTag<unknown> | undefined,
      contents,
      result,
    })
    const processOptions: ProcessOptions & { onTimer: (time: number, ctx: TimerContext<Key, unknown>) => void } = {
      ...rest,
      state: logic.states,
      onTimer: (time, ctx) => logic.timer(time, ctx),
    }
    return this.keyed.process(name, processOptions, (record, ctx) => logic.element(record, ctx as unknown as TimedContext<Key, unknown>)) as Stream<OUT>
  }
}

/** The per-record and per-timer logic of one window operator (shared by its instances: it keeps no state of its own). Internal; exported for its tests. */
export class WindowLogic {
  private readonly windowsState = mapState<number, number>('windows')
  private readonly contentsState = mapState<number, unknown>('window-contents')
  private readonly elementsState = listState<readonly [number, unknown]>('window-elements')
  readonly states: Record<string, ReturnType<typeof mapState> | ReturnType<typeof listState>>
  private readonly eventTime: boolean
  private readonly lateness: number
  /** Windows due to fire once the record in hand is in (late records within the allowed lateness). */
  private readonly dueStarts: number[] = []
  private readonly dueEnds: number[] = []

  constructor(private readonly spec: WindowSpec) {
    this.eventTime = spec.assigner.domain === 'event-time'
    this.lateness = spec.lateness
    this.states = spec.contents.kind === 'process' ? { windows: this.windowsState, elements: this.elementsState } : { windows: this.windowsState, contents: this.contentsState }
  }

  element(record: unknown, ctx: TimedContext<Key, unknown>): void {
    let timestamp: number
    let watermark: number
    if (this.eventTime) {
      const t = ctx.timestamp
      if (t === undefined) {
        throw new JobDefinitionError(
          'event-time windows need the time of every record: give the source watermarks, e.g. { watermarks: boundedOutOfOrderness({ timestamp: (r) => r.time, maxOutOfOrdernessMs: 5000 }) }, or use processing-time windows',
          undefined,
          this.spec.operator,
        )
      }
      timestamp = t
      watermark = ctx.timers.currentWatermark()
    } else {
      timestamp = ctx.timers.currentProcessingTime()
      watermark = -Infinity
    }
    if (!Number.isSafeInteger(timestamp)) {
      throw new JobDefinitionError(
        `windows need whole-millisecond times, got ${describeValue(timestamp)} for key ${describeValue(ctx.key)}${this.eventTime ? ' (round it in the timestamp function of the source\'s watermarks)' : ' from the clock'}`,
        undefined,
        this.spec.operator,
      )
    }
    const windows = ctx.state(this.windowsState)
    const a = this.spec.assigner
    let taken = false
    this.dueStarts.length = 0
    this.dueEnds.length = 0
    if (a.kind === 'tumbling') {
      const start = windowStart(timestamp, a.sizeMs, a.offsetMs)
      taken = this.add(record, start, start + a.sizeMs, windows, watermark, ctx)
    } else if (a.kind === 'sliding') {
      for (let start = windowStart(timestamp, a.slideMs, a.offsetMs); start > timestamp - a.sizeMs; start -= a.slideMs) {
        if (this.add(record, start, start + a.sizeMs, windows, watermark, ctx)) taken = true
      }
    } else taken = this.addToSession(record, timestamp, a.gapMs, windows, watermark, ctx)
    if (!taken) {
      // Late for every window it belongs to (Flink's isSkippedElement && isElementLate); a record
      // in the gap between sliding windows belongs to none and is not late.
      if (this.eventTime && timestamp + this.lateness <= watermark && this.spec.lateTag !== undefined) ctx.output(this.spec.lateTag, record)
      return
    }
    if (this.spec.contents.kind === 'process') ctx.state(this.elementsState).add([timestamp, record])
    for (let i = 0; i < this.dueEnds.length; i++) this.fire(this.dueStarts[i]!, this.dueEnds[i]!, ctx)
  }

  /** Adds `record` to window `[start, end)` unless the window is late; true if it did. */
  private add(record: unknown, start: number, end: number, windows: MapState<number, number>, watermark: number, ctx: TimedContext<Key, unknown>): boolean {
    if (this.eventTime && end - 1 + this.lateness <= watermark) return false
    const fresh = !windows.contains(end)
    if (fresh) {
      windows.put(end, start)
      this.registerTimers(end, watermark, ctx)
    }
    this.accumulate(record, end, fresh, ctx)
    if (this.eventTime && end - 1 <= watermark) this.due(start, end)
    return true
  }

  /** Adds `record` to the key's session that holds `[timestamp, timestamp + gap)`, merging the sessions it joins. */
  private addToSession(record: unknown, timestamp: number, gap: number, windows: MapState<number, number>, watermark: number, ctx: TimedContext<Key, unknown>): boolean {
    const sessions: TimeWindow[] = []
    for (const [end, start] of windows.entries()) sessions.push({ start, end })
    const { window, merged } = mergeSession(sessions, { start: timestamp, end: timestamp + gap })
    const { start, end } = window
    // Late only if it joins no open session (an open one is not late, and the merge covers it).
    if (this.eventTime && end - 1 + this.lateness <= watermark) return false
    let fresh = true
    if (merged.length === 1 && merged[0]!.start === start && merged[0]!.end === end) fresh = false
    else if (merged.length > 0) {
      // A process window's records stay where they are: they belong to the window holding their time.
      const contents = this.spec.contents.kind === 'process' ? undefined : ctx.state(this.contentsState)
      let acc: unknown
      for (let i = 0; i < merged.length; i++) {
        const w = merged[i]!
        windows.remove(w.end)
        if (contents !== undefined) {
          const value = contents.get(w.end)
          contents.remove(w.end)
          acc = i === 0 ? value : this.combine(acc, value, ctx)
        }
      }
      windows.put(end, start)
      contents?.put(end, acc)
      for (const w of merged) this.deleteTimers(w.end, windows, ctx)
      this.registerTimers(end, watermark, ctx)
      fresh = false
    } else {
      windows.put(end, start)
      this.registerTimers(end, watermark, ctx)
    }
    this.accumulate(record, end, fresh, ctx)
    if (this.eventTime && end - 1 <= watermark) this.due(start, end)
    return true
  }

  private due(start: number, end: number): void {
    this.dueStarts.push(start)
    this.dueEnds.push(end)
  }

  private registerTimers(end: number, watermark: number, ctx: TimedContext<Key, unknown>): void {
    const timers = ctx.timers
    if (this.eventTime) {
      // A window whose end - 1 the watermark already passed fires with the record in hand (late
      // within the allowed lateness), never by a timer in the past.
      if (end - 1 > watermark) timers.registerEventTimeTimer(end - 1)
      if (this.lateness > 0) timers.registerEventTimeTimer(end - 1 + this.lateness)
    } else {
      timers.registerProcessingTimeTimer(end - 1)
      timers.registerEventTimeTimer(END_OF_INPUT)
    }
  }

  /**
   * Deletes the timers of a session merged away, unless an open window of the key needs the same
   * time (one timer per key and time serves both).
   */
  private deleteTimers(end: number, windows: MapState<number, number>, ctx: TimedContext<Key, unknown>): void {
    const needed = (time: number) => windows.contains(time + 1) || (this.lateness > 0 && windows.contains(time + 1 - this.lateness))
    const timers = ctx.timers
    if (this.eventTime) {
      if (!needed(end - 1)) timers.deleteEventTimeTimer(end - 1)
      if (this.lateness > 0 && !needed(end - 1 + this.lateness)) timers.deleteEventTimeTimer(end - 1 + this.lateness)
    } else if (!windows.contains(end)) timers.deleteProcessingTimeTimer(end - 1)
  }

  private accumulate(record: unknown, end: number, fresh: boolean, ctx: TimedContext<Key, unknown>): void {
    const c = this.spec.contents
    if (c.kind === 'process') return
    const contents = ctx.state(this.contentsState)
    if (c.kind === 'reduce') {
      contents.put(end, fresh ? record : this.checked(c.reduce(contents.get(end), record), ctx))
    } else {
      const acc = fresh ? this.checked(c.aggregator.createAccumulator(), ctx) : contents.get(end)
      contents.put(end, this.checked(c.aggregator.add(acc, record), ctx))
    }
  }

  /** Combines the values of two merging sessions. */
  private combine(a: unknown, b: unknown, ctx: TimedContext<Key, unknown>): unknown {
    const c = this.spec.contents
    if (c.kind === 'reduce') return this.checked(c.reduce(a, b), ctx)
    if (c.kind === 'aggregate') return this.checked(c.aggregator.merge!(a, b), ctx)
    return undefined
  }

  /** Fails with `AsyncUserCodeError` if user code returned a promise. */
  private checked<V>(value: V, ctx: TimedContext<Key, unknown>): V {
    if (typeof value === 'object' && value !== null) {
      const error = asyncResultError(value, this.spec.operator, ctx.instance, ctx.key)
      if (error !== undefined) throw error
    }
    return value
  }

  private fire(start: number, end: number, ctx: TimedContext<Key, unknown>): void {
    const c = this.spec.contents
    const window: TimeWindow = { start, end }
    let value: unknown
    if (c.kind === 'reduce') value = ctx.state(this.contentsState).get(end)
    else if (c.kind === 'aggregate') value = this.checked(c.aggregator.getResult(ctx.state(this.contentsState).get(end)), ctx)
    else {
      const records: unknown[] = []
      for (const [t, r] of ctx.state(this.elementsState).get()) if (t >= start && t < end) records.push(r)
      value = this.checked(c.fn(ctx.key, window, records), ctx)
    }
    const result = this.spec.result
    ctx.emit(result === undefined ? { key: ctx.key, window, value } : this.checked(result(ctx.key, window, value), ctx))
  }

  private clear(end: number, windows: MapState<number, number>, ctx: TimedContext<Key, unknown>): void {
    windows.remove(end)
    if (this.spec.contents.kind !== 'process') {
      ctx.state(this.contentsState).remove(end)
      return
    }
    const elements: ListState<readonly [number, unknown]> = ctx.state(this.elementsState)
    if (windows.isEmpty()) {
      elements.clear()
      return
    }
    // Keep the records some open window still holds (sliding windows share them).
    const open = [...windows.entries()]
    const all = elements.get()
    const kept = all.filter(([t]) => open.some(([e, s]) => t >= s && t < e))
    if (kept.length !== all.length) elements.update(kept)
  }

  timer(time: number, ctx: TimerContext<Key, unknown>): void {
    const windows = ctx.state(this.windowsState)
    if (windows.isEmpty()) return
    if (!this.eventTime) {
      if (ctx.timeDomain === 'processing-time') {
        const start = windows.get(time + 1)
        if (start !== undefined) {
          this.fire(start, time + 1, ctx)
          this.clear(time + 1, windows, ctx)
        }
      } else if (time === END_OF_INPUT) {
        // The input ended: fire what is still open, in time order.
        for (const [end, start] of [...windows.entries()].sort((x, y) => x[0] - y[0])) {
          this.fire(start, end, ctx)
          this.clear(end, windows, ctx)
        }
      }
      return
    }
    if (ctx.timeDomain !== 'event-time') return
    // One timer per key and time: it may be one window's firing and another's clean-up.
    const start = windows.get(time + 1)
    if (start !== undefined) this.fire(start, time + 1, ctx)
    const cleanEnd = time + 1 - this.lateness
    if (windows.contains(cleanEnd)) this.clear(cleanEnd, windows, ctx)
  }
}
