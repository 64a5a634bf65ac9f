/**
 * Event time (docs/architecture.md section 17): the watermark strategy of a source, and the
 * per-channel watermark bookkeeping of an operator with inputs. A watermark `w`
 * says "no record with a timestamp <= w comes any more" on that channel; an operator's watermark
 * is the minimum over its non-idle input channels, and it only moves forward.
 */
import { JobDefinitionError, rejectAsync } from '../errors.ts'

/**
 * How a source assigns event times and watermarks. Create one with {@link boundedOutOfOrderness}.
 */
export interface WatermarkStrategy<T> {
  readonly kind: 'bounded-out-of-orderness'
  /** The event time of a record, in ms. */
  readonly timestamp: (record: T) => number
  /** How late a record may come after a later one, in ms. */
  readonly maxOutOfOrdernessMs: number
  /** After this long without a record, the source instance marks itself idle. */
  readonly idleTimeoutMs: number | undefined
}

/** Options of {@link boundedOutOfOrderness}. */
export interface BoundedOutOfOrdernessOptions<T> {
  /** The event time of a record, in ms since the epoch (or any monotonic unit of ms). Must be synchronous and return a finite number. */
  timestamp: (record: T) => number
  /** The watermark trails the highest timestamp seen by this much: records up to this much out of order are not late. */
  maxOutOfOrdernessMs: number
  /**
   * A source instance that emitted nothing for this long (processing time) is idle: it no longer
   * holds back the watermark downstream until it emits again. Absent: never idle.
   */
  idleTimeoutMs?: number
}

/**
 * Watermarks that trail the highest timestamp seen by `maxOutOfOrdernessMs` (Flink's
 * `forBoundedOutOfOrderness`): the watermark after a record with timestamp `t` is at least
 * `t - maxOutOfOrdernessMs - 1`.
 * @example
 * job('clicks').source('in', clicks, {
 *   watermarks: boundedOutOfOrderness<Click>({ timestamp: (c) => c.at, maxOutOfOrdernessMs: 5000, idleTimeoutMs: 60_000 }),
 * })
 */
export function boundedOutOfOrderness<T>(options: BoundedOutOfOrdernessOptions<T>): WatermarkStrategy<T> {
  if (typeof options !== 'object' || options === null) throw new JobDefinitionError('boundedOutOfOrderness needs { timestamp, maxOutOfOrdernessMs }')
  for (const k of Object.keys(options)) {
    if (k !== 'timestamp' && k !== 'maxOutOfOrdernessMs' && k !== 'idleTimeoutMs') {
      throw new JobDefinitionError(`boundedOutOfOrderness: unknown option ${k} (known: timestamp, maxOutOfOrdernessMs, idleTimeoutMs)`)
    }
  }
  const { timestamp, maxOutOfOrdernessMs, idleTimeoutMs } = options
  if (typeof timestamp !== 'function') throw new JobDefinitionError('boundedOutOfOrderness: timestamp must be a function (record) => number')
  rejectAsync(timestamp, 'boundedOutOfOrderness: timestamp')
  if (typeof maxOutOfOrdernessMs !== 'number' || !Number.isFinite(maxOutOfOrdernessMs) || maxOutOfOrdernessMs < 0) {
    throw new JobDefinitionError(`boundedOutOfOrderness: maxOutOfOrdernessMs must be a finite number >= 0, got ${String(maxOutOfOrdernessMs)}`)
  }
  if (idleTimeoutMs !== undefined && (typeof idleTimeoutMs !== 'number' || !Number.isFinite(idleTimeoutMs) || idleTimeoutMs <= 0)) {
    throw new JobDefinitionError(`boundedOutOfOrderness: idleTimeoutMs must be a finite number > 0, got ${String(idleTimeoutMs)}`)
  }
  return Object.freeze({ kind: 'bounded-out-of-orderness' as const, timestamp, maxOutOfOrdernessMs, idleTimeoutMs })
}

/** True for a value made by {@link boundedOutOfOrderness}. */
export function isWatermarkStrategy(value: unknown): value is WatermarkStrategy<unknown> {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'bounded-out-of-orderness' && typeof (value as { timestamp?: unknown }).timestamp === 'function'
}

/**
 * The watermark of an operator instance over its input channels: the minimum over the channels
 * that are not idle (an ended channel counts as +Infinity), never moving back.
 */
export class WatermarkTracker {
  private readonly marks: number[]
  private readonly idle: boolean[]
  private readonly ended: boolean[]
  /** The instance's watermark: -Infinity before every channel sent one. */
  current = -Infinity

  constructor(channels: number) {
    this.marks = new Array<number>(channels).fill(-Infinity)
    this.idle = new Array<boolean>(channels).fill(false)
    this.ended = new Array<boolean>(channels).fill(false)
  }

  /** True if every channel that has not ended is idle (and one is): the instance is idle too. */
  get allIdle(): boolean {
    let idle = false
    for (let c = 0; c < this.marks.length; c++) {
      if (this.ended[c]) continue
      if (!this.idle[c]) return false
      idle = true
    }
    return idle
  }

  /** A watermark item arrived on `channel`. Returns the new watermark if it advanced, else undefined. */
  onWatermark(channel: number, time: number, idle: boolean): number | undefined {
    this.idle[channel] = idle
    if (time > this.marks[channel]!) this.marks[channel] = time
    return this.recompute()
  }

  /** Records arrived on `channel`: an idle channel is active again. Returns the new watermark if it changed. */
  onActive(channel: number): void {
    // A channel becoming active again may lower the minimum, but the watermark never moves back.
    this.idle[channel] = false
  }

  /** `channel` never carries watermarks (a message channel): it never holds the watermark back. */
  ignore(channel: number): void {
    this.marks[channel] = Infinity
    // Like an ended channel: neither active nor idle, so it cannot lift the watermark alone.
    this.ended[channel] = true
  }

  /** `channel` ended: it no longer holds the watermark back. */
  onEnd(channel: number): number | undefined {
    this.marks[channel] = Infinity
    this.idle[channel] = false
    this.ended[channel] = true
    return this.recompute()
  }

  private recompute(): number | undefined {
    let min = Infinity
    let active = false
    let open = false
    for (let c = 0; c < this.marks.length; c++) {
      if (this.idle[c]) {
        open = true
        continue
      }
      if (!this.ended[c]) active = true
      if (this.marks[c]! < min) min = this.marks[c]!
    }
    // Every open channel idle: the watermark stays where it is. (Ended channels alone must not
    // lift it to +Infinity while an idle one may still send records.)
    if (open && !active) return undefined
    if (min > this.current) {
      this.current = min
      return min
    }
    return undefined
  }
}
