/**
 * The runtime of a window operator (docs/architecture.md section 18): `WindowLogic`, the function
 * and `onTimer` of the keyed process that `windowProcess` (actors/time/window-operator.ts) makes.
 * It assigns each record to its windows, folds it into their values, registers the timers that
 * fire and clear them, and emits a window's result when it fires. Its state and timers are laid
 * out in the opening comment of window-operator.ts.
 */
import { asyncResultError, describeValue, JobDefinitionError } from '../errors.ts'
import type { ProcessContext, TimerContext } from '../api/contexts.ts'
import type { Key } from '../state/key-groups.ts'
import { listState, valueState, type ListState, type StateDescriptor, type ValueState } from '../api/state.ts'
import { mergeSession, windowStart, type SlidingWindows, type TimeWindow, type TumblingWindows } from './windows.ts'
import type { WindowSpec } from './window-spec.ts'

/**
 * The event-time timer that fires processing-time windows still open at the end of the input,
 * whose watermark is +Infinity. No event-time watermark of a real job comes near it.
 */
export const END_OF_INPUT = Number.MAX_SAFE_INTEGER

/**
 * One open window of a key, as kept in the `windows` value state. `value` is the reduced value or
 * accumulator (`reduce`, `aggregate`; absent for `process`).
 */
export interface OpenWindow {
  readonly start: number
  readonly end: number
  readonly value?: unknown
}

const NONE: readonly OpenWindow[] = Object.freeze([])

/** The index of the window ending at `end` in `open`, or -1. */
function find(open: readonly OpenWindow[], end: number): number {
  for (let i = 0; i < open.length; i++) if (open[i]!.end === end) return i
  return -1
}

/** The per-record and per-timer logic of one window operator (shared by its instances: it keeps no state of its own). Internal; exported for its tests. */
export class WindowLogic {
  private readonly windowsState = valueState<readonly OpenWindow[]>('windows')
  private readonly latestEndState = valueState<number>('window-end')
  private readonly latestValueState = valueState<unknown>('window-value')
  private readonly elementsState = listState<readonly [number, unknown]>('window-elements')
  readonly states: Record<string, StateDescriptor>
  private readonly eventTime: boolean
  private readonly lateness: number
  private readonly keeps: boolean
  /** Tumbling windows keep a key's latest window in `window-end` and `window-value`, apart from the others. */
  private readonly tumbling: TumblingWindows | undefined
  /** The handles of the last context seen: one context per instance, and its handles never change. */
  private lastCtx: unknown
  private windowsHandle!: ValueState<readonly OpenWindow[]>
  private latestEnd!: ValueState<number | undefined>
  private latestValue!: ValueState<unknown>
  /** Ends of the windows due to fire once the record in hand is in (late records within the allowed lateness). */
  private readonly due: number[] = []

  constructor(private readonly spec: WindowSpec) {
    this.eventTime = spec.assigner.domain === 'event-time'
    this.lateness = spec.lateness
    this.keeps = spec.contents.kind !== 'process'
    this.tumbling = spec.assigner.kind === 'tumbling' ? spec.assigner : undefined
    const states: Record<string, StateDescriptor> = { windows: this.windowsState }
    if (this.tumbling !== undefined) states.latestEnd = this.latestEndState
    if (this.tumbling !== undefined && this.keeps) states.latestValue = this.latestValueState
    if (!this.keeps) states.elements = this.elementsState
    this.states = states
  }

  private bind(ctx: ProcessContext<Key, unknown>): void {
    if (ctx === this.lastCtx) return
    this.windowsHandle = ctx.state(this.windowsState)
    if (this.tumbling !== undefined) this.latestEnd = ctx.state(this.latestEndState)
    if (this.tumbling !== undefined && this.keeps) this.latestValue = ctx.state(this.latestValueState)
    this.lastCtx = ctx
  }

  element(record: unknown, ctx: ProcessContext<Key, unknown>): void {
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
        `windows need whole-millisecond times, got ${describeValue(timestamp)} for key ${describeValue(ctx.key)}${this.eventTime ? " (round it in the timestamp function of the source's watermarks)" : ' from the clock'}`,
        undefined,
        this.spec.operator,
      )
    }
    this.bind(ctx)
    const a = this.spec.assigner
    let taken: boolean
    if (a.kind === 'tumbling') taken = this.addTumbling(record, windowStart(timestamp, a.sizeMs, a.offsetMs), a.sizeMs, watermark, ctx)
    else {
      const open = this.windowsHandle.value() ?? NONE
      const next = a.kind === 'session' ? this.addToSession(record, timestamp, a.gapMs, open, watermark, ctx) : this.addSliding(record, timestamp, a, open, watermark, ctx)
      taken = next !== undefined
      if (next !== undefined && next !== open) this.windowsHandle.update(next)
    }
    if (!taken) {
      this.due.length = 0
      // Late for every window it belongs to (Flink's isSkippedElement && isElementLate); a record
      // in the gap between sliding windows belongs to none and is not late.
      if (this.eventTime && timestamp + this.lateness <= watermark && this.spec.lateTag !== undefined) ctx.output(this.spec.lateTag, record)
      return
    }
    if (!this.keeps) ctx.state(this.elementsState).add([timestamp, record])
    if (this.due.length > 0) {
      for (const end of this.due) {
        const w = this.lookup(end)
        if (w !== undefined) this.fire(w.start, w.end, w.value, ctx)
      }
      this.due.length = 0
    }
  }

  /**
   * Adds `record` to the tumbling window `[start, start + size)` unless it is late; true if it
   * did. The key's latest window lives in two value states of primitives (its end, its value),
   * so the usual record (in the latest window, a numeric value) allocates nothing and reads no
   * object; older windows still open (kept for lateness, or records out of order across a
   * window's end) are in `windows`.
   */
  private addTumbling(record: unknown, start: number, size: number, watermark: number, ctx: ProcessContext<Key, unknown>): boolean {
    const end = start + size
    if (this.eventTime && end - 1 + this.lateness <= watermark) return false
    const latest = this.latestEnd.value()
    if (latest === end) {
      if (this.keeps) this.latestValue.update(this.fold(this.latestValue.value(), record, ctx))
    } else {
      const open = this.windowsHandle.value() ?? NONE
      const i = find(open, end)
      if (i >= 0) {
        if (this.keeps) {
          const next = open.slice()
          next[i] = { start, end, value: this.fold(open[i]!.value, record, ctx) }
          this.windowsHandle.update(next)
        }
      } else {
        const value = this.keeps ? this.first(record, ctx) : undefined
        this.registerTimers(end, watermark, ctx)
        if (latest === undefined || end > latest) {
          if (latest !== undefined) this.windowsHandle.update([...open, this.keeps ? { start: latest - size, end: latest, value: this.latestValue.value() } : { start: latest - size, end: latest }])
          this.latestEnd.update(end)
          if (this.keeps) this.latestValue.update(value)
        } else this.windowsHandle.update([...open, this.keeps ? { start, end, value } : { start, end }])
      }
    }
    if (this.eventTime && end - 1 <= watermark) this.due.push(end)
    return true
  }

  /** Adds `record` to its sliding windows that are not late; returns the key's new windows, or undefined if it went into none. */
  private addSliding(record: unknown, timestamp: number, a: SlidingWindows, open: readonly OpenWindow[], watermark: number, ctx: ProcessContext<Key, unknown>): readonly OpenWindow[] | undefined {
    let taken = false
    let next: OpenWindow[] | undefined
    for (let start = windowStart(timestamp, a.slideMs, a.offsetMs); start > timestamp - a.sizeMs; start -= a.slideMs) {
      const end = start + a.sizeMs
      if (this.eventTime && end - 1 + this.lateness <= watermark) continue
      taken = true
      const i = find(next ?? open, end)
      if (i < 0) {
        next ??= open.slice()
        next.push(this.keeps ? { start, end, value: this.first(record, ctx) } : { start, end })
        this.registerTimers(end, watermark, ctx)
      } else if (this.keeps) {
        next ??= open.slice()
        next[i] = { start, end, value: this.fold(next[i]!.value, record, ctx) }
      }
      if (this.eventTime && end - 1 <= watermark) this.due.push(end)
    }
    return taken ? (next ?? open) : undefined
  }

  /** The key's open window ending at `end`, if any. */
  private lookup(end: number): OpenWindow | undefined {
    if (this.tumbling !== undefined && this.latestEnd.value() === end) {
      return { start: end - this.tumbling.sizeMs, end, value: this.keeps ? this.latestValue.value() : undefined }
    }
    const open = this.windowsHandle.value() ?? NONE
    return open[find(open, end)]
  }

  /** Every open window of the key. */
  private all(): OpenWindow[] {
    const open = [...(this.windowsHandle.value() ?? NONE)]
    const latest = this.tumbling === undefined ? undefined : this.latestEnd.value()
    if (latest !== undefined) open.push({ start: latest - this.tumbling!.sizeMs, end: latest, value: this.keeps ? this.latestValue.value() : undefined })
    return open
  }

  /**
   * Adds `record` to the key's session that holds `[timestamp, timestamp + gap)`, merging the
   * sessions it joins; returns the key's new windows, or undefined if the record is late.
   */
  private addToSession(record: unknown, timestamp: number, gap: number, open: readonly OpenWindow[], watermark: number, ctx: ProcessContext<Key, unknown>): OpenWindow[] | undefined {
    const { window, merged } = mergeSession(open, { start: timestamp, end: timestamp + gap })
    const { start, end } = window
    // Late only if it joins no open session (an open one is not late, and the merge covers it).
    if (this.eventTime && end - 1 + this.lateness <= watermark) return undefined
    const next = open.filter((w) => !merged.includes(w))
    let value: unknown
    if (merged.length === 0) {
      if (this.keeps) value = this.first(record, ctx)
      this.registerTimers(end, watermark, ctx)
    } else {
      // A process window's records stay where they are: they belong to the window holding their time.
      if (this.keeps) {
        value = merged[0]!.value
        for (let i = 1; i < merged.length; i++) value = this.combine(value, merged[i]!.value, ctx)
        value = this.fold(value, record, ctx)
      }
      const unchanged = merged.length === 1 && merged[0]!.start === start && merged[0]!.end === end
      if (!unchanged) {
        for (const w of merged) this.deleteTimers(w.end, next, end, ctx)
        this.registerTimers(end, watermark, ctx)
      }
    }
    next.push(this.keeps ? { start, end, value } : { start, end })
    if (this.eventTime && end - 1 <= watermark) this.due.push(end)
    return next
  }

  private registerTimers(end: number, watermark: number, ctx: ProcessContext<Key, unknown>): void {
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
   * Deletes the timers of a session merged away, unless another window of the key (`others`, or
   * the merged session ending at `mergedEnd`) needs the same time: one timer per key and time
   * serves every window due then.
   */
  private deleteTimers(end: number, others: readonly OpenWindow[], mergedEnd: number, ctx: ProcessContext<Key, unknown>): void {
    const ends = (e: number) => e === mergedEnd || find(others, e) >= 0
    const needed = (time: number) => ends(time + 1) || (this.lateness > 0 && ends(time + 1 - this.lateness))
    const timers = ctx.timers
    if (this.eventTime) {
      if (!needed(end - 1)) timers.deleteEventTimeTimer(end - 1)
      if (this.lateness > 0 && !needed(end - 1 + this.lateness)) timers.deleteEventTimeTimer(end - 1 + this.lateness)
    } else if (!ends(end)) timers.deleteProcessingTimeTimer(end - 1)
  }

  /** The value of a window that `record` opens. */
  private first(record: unknown, ctx: ProcessContext<Key, unknown>): unknown {
    const c = this.spec.contents
    if (c.kind === 'reduce') return record
    if (c.kind === 'aggregate') return this.checked(c.aggregator.add(this.checked(c.aggregator.createAccumulator(), ctx), record), ctx)
    return undefined
  }

  /** Folds `record` into a window's value. */
  private fold(value: unknown, record: unknown, ctx: ProcessContext<Key, unknown>): unknown {
    const c = this.spec.contents
    if (c.kind === 'reduce') return this.checked(c.reduce(value, record), ctx)
    if (c.kind === 'aggregate') return this.checked(c.aggregator.add(value, record), ctx)
    return undefined
  }

  /** Combines the values of two merging sessions, the earlier first. */
  private combine(a: unknown, b: unknown, ctx: ProcessContext<Key, unknown>): unknown {
    const c = this.spec.contents
    if (c.kind === 'reduce') return this.checked(c.reduce(a, b), ctx)
    if (c.kind === 'aggregate') return this.checked(c.aggregator.merge!(a, b), ctx)
    return undefined
  }

  /** Fails with `AsyncUserCodeError` if user code returned a promise. */
  private checked<V>(value: V, ctx: ProcessContext<Key, unknown>): V {
    if (typeof value === 'object' && value !== null) {
      const error = asyncResultError(value, this.spec.operator, ctx.instance, ctx.key)
      if (error !== undefined) throw error
    }
    return value
  }

  private fire(start: number, end: number, stored: unknown, ctx: ProcessContext<Key, unknown>): void {
    const c = this.spec.contents
    const window: TimeWindow = { start, end }
    let value: unknown
    if (c.kind === 'reduce') value = stored
    else if (c.kind === 'aggregate') value = this.checked(c.aggregator.getResult(stored), ctx)
    else {
      const records: unknown[] = []
      for (const [t, r] of ctx.state(this.elementsState).get()) if (t >= start && t < end) records.push(r)
      value = this.checked(c.fn(ctx.key, window, records), ctx)
    }
    const result = this.spec.result
    ctx.emit(result === undefined ? { key: ctx.key, window, value } : this.checked(result(ctx.key, window, value), ctx))
  }

  /** Removes the key's window ending at `end`, and drops the records no open window holds any more (`process`). */
  private clear(end: number, ctx: ProcessContext<Key, unknown>): void {
    if (this.tumbling !== undefined && this.latestEnd.value() === end) {
      this.latestEnd.clear()
      if (this.keeps) this.latestValue.clear()
    } else {
      const open = this.windowsHandle.value() ?? NONE
      const i = find(open, end)
      if (i < 0) return
      if (open.length === 1) this.windowsHandle.clear()
      else this.windowsHandle.update(open.filter((_, j) => j !== i))
    }
    if (this.keeps) return
    const elements: ListState<readonly [number, unknown]> = ctx.state(this.elementsState)
    const left = this.all()
    if (left.length === 0) {
      elements.clear()
      return
    }
    // Keep the records some open window still holds (sliding windows share them).
    const records = elements.get()
    const kept = records.filter(([t]) => left.some((w) => t >= w.start && t < w.end))
    if (kept.length !== records.length) elements.update(kept)
  }

  timer(time: number, ctx: TimerContext<Key, unknown>): void {
    this.bind(ctx)
    if (!this.eventTime) {
      if (ctx.timeDomain === 'processing-time') {
        const w = this.lookup(time + 1)
        if (w !== undefined) {
          this.fire(w.start, w.end, w.value, ctx)
          this.clear(w.end, ctx)
        }
      } else if (time === END_OF_INPUT) {
        // The input ended: fire what is still open, in time order.
        for (const w of this.all().sort((x, y) => x.end - y.end)) {
          this.fire(w.start, w.end, w.value, ctx)
          this.clear(w.end, ctx)
        }
      }
      return
    }
    if (ctx.timeDomain !== 'event-time') return
    // One timer per key and time: it may be one window's firing and another's clean-up.
    const due = this.lookup(time + 1)
    if (due !== undefined) this.fire(due.start, due.end, due.value, ctx)
    this.clear(time + 1 - this.lateness, ctx)
  }
}
