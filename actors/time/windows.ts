/**
 * Window assigners and the pure arithmetic of time windows (docs/architecture.md section 18):
 * which windows a timestamp falls into, when a window fires and when its state is cleared, and
 * how session windows merge. The window operator (`window-operator.ts`, `window-logic.ts`)
 * applies them per record and per timer; everything here is pure and tested on its own.
 *
 * Times are milliseconds. A window is `[start, end)`: it holds timestamps `start <= t < end`, so
 * its largest timestamp is `end - 1`, as in Flink.
 */
import { JobDefinitionError } from '../errors.ts'

/** A time window `[start, end)`: timestamps `start <= t < end`, in ms. */
export interface TimeWindow {
  readonly start: number
  readonly end: number
}

/** Which clock assigns records to windows and fires them. */
export type WindowTimeDomain = 'event-time' | 'processing-time'

/** Fixed-size windows that do not overlap: every timestamp is in exactly one. */
export interface TumblingWindows {
  readonly kind: 'tumbling'
  readonly domain: WindowTimeDomain
  readonly sizeMs: number
  readonly offsetMs: number
}

/** Fixed-size windows that start every `slideMs`: a timestamp is in `sizeMs / slideMs` of them. */
export interface SlidingWindows {
  readonly kind: 'sliding'
  readonly domain: WindowTimeDomain
  readonly sizeMs: number
  readonly slideMs: number
  readonly offsetMs: number
}

/** Windows of activity per key: a record opens `[t, t + gapMs)`, and windows that overlap or touch merge. */
export interface SessionWindows {
  readonly kind: 'session'
  readonly domain: WindowTimeDomain
  readonly gapMs: number
}

/** How records are grouped into windows; made by {@link tumblingEventTimeWindows} and its siblings. */
export type WindowAssigner = TumblingWindows | SlidingWindows | SessionWindows

function positiveMs(what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new JobDefinitionError(`${what} must be a positive whole number of milliseconds, got ${String(value)}`)
  }
  return value
}

function offsetMs(what: string, value: unknown, below: number, of: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || Math.abs(value) >= below) {
    throw new JobDefinitionError(`${what}: the offset must be a whole number of milliseconds smaller in size than the ${of} (${below}), got ${String(value)}`)
  }
  return value
}

function tumbling(domain: WindowTimeDomain, sizeMs: number, offset: number): TumblingWindows {
  const name = domain === 'event-time' ? 'tumblingEventTimeWindows' : 'tumblingProcessingTimeWindows'
  const size = positiveMs(`${name}: the size`, sizeMs)
  return Object.freeze({ kind: 'tumbling', domain, sizeMs: size, offsetMs: offsetMs(name, offset, size, 'size') })
}

function sliding(domain: WindowTimeDomain, sizeMs: number, slideMs: number, offset: number): SlidingWindows {
  const name = domain === 'event-time' ? 'slidingEventTimeWindows' : 'slidingProcessingTimeWindows'
  const size = positiveMs(`${name}: the size`, sizeMs)
  const slide = positiveMs(`${name}: the slide`, slideMs)
  return Object.freeze({ kind: 'sliding', domain, sizeMs: size, slideMs: slide, offsetMs: offsetMs(name, offset, slide, 'slide') })
}

function session(domain: WindowTimeDomain, gapMs: number): SessionWindows {
  const name = domain === 'event-time' ? 'eventTimeSessionWindows' : 'processingTimeSessionWindows'
  return Object.freeze({ kind: 'session', domain, gapMs: positiveMs(`${name}: the gap`, gapMs) })
}

/**
 * Tumbling windows of `sizeMs` by event time: `[k * size + offset, (k + 1) * size + offset)`.
 * A window fires when the watermark passes its end - 1.
 * @param offsetMs shifts the windows, e.g. `-3_600_000` with day windows for days in UTC+1. @default 0
 * @example
 * stream.keyBy((r) => r.sensor).window(tumblingEventTimeWindows(60_000)).aggregate('per-minute', average)
 */
export function tumblingEventTimeWindows(sizeMs: number, offsetMs = 0): TumblingWindows {
  return tumbling('event-time', sizeMs, offsetMs)
}

/**
 * Sliding windows of `sizeMs` by event time, one starting every `slideMs`. A slide larger than
 * the size leaves gaps: records between two windows belong to none and are dropped.
 * @example
 * // the last hour, every five minutes
 * stream.keyBy((r) => r.page).window(slidingEventTimeWindows(3_600_000, 300_000)).reduce('views', (a, b) => a + b)
 */
export function slidingEventTimeWindows(sizeMs: number, slideMs: number, offsetMs = 0): SlidingWindows {
  return sliding('event-time', sizeMs, slideMs, offsetMs)
}

/**
 * Session windows by event time: a key's records less than `gapMs` apart share a window. Each
 * record opens `[t, t + gap)` and windows that overlap or touch merge, as in Flink.
 * @example
 * clicks.keyBy((c) => c.user).window(eventTimeSessionWindows(30 * 60_000)).process('sessions', (user, w, clicks) => clicks.length)
 */
export function eventTimeSessionWindows(gapMs: number): SessionWindows {
  return session('event-time', gapMs)
}

/**
 * Tumbling windows by the processing time (the operator's clock) at which records arrive. A
 * window fires when the clock passes its end - 1; at the end of the input, windows still open fire.
 */
export function tumblingProcessingTimeWindows(sizeMs: number, offsetMs = 0): TumblingWindows {
  return tumbling('processing-time', sizeMs, offsetMs)
}

/** Sliding windows by processing time (see {@link slidingEventTimeWindows} and {@link tumblingProcessingTimeWindows}). */
export function slidingProcessingTimeWindows(sizeMs: number, slideMs: number, offsetMs = 0): SlidingWindows {
  return sliding('processing-time', sizeMs, slideMs, offsetMs)
}

/** Session windows by processing time (see {@link eventTimeSessionWindows} and {@link tumblingProcessingTimeWindows}). */
export function processingTimeSessionWindows(gapMs: number): SessionWindows {
  return session('processing-time', gapMs)
}

/** True if `value` is an assigner made by one of the factories above. */
export function isWindowAssigner(value: unknown): value is WindowAssigner {
  if (typeof value !== 'object' || value === null) return false
  const { kind, domain } = value as { kind?: unknown; domain?: unknown }
  return (kind === 'tumbling' || kind === 'sliding' || kind === 'session') && (domain === 'event-time' || domain === 'processing-time')
}

/**
 * The start of the last window of length-`slide` steps (shifted by `offset`) that holds
 * `timestamp`; correct for negative timestamps too (Flink's `getWindowStartWithOffset`).
 */
export function windowStart(timestamp: number, slide: number, offset: number): number {
  const remainder = (timestamp - offset) % slide
  return remainder < 0 ? timestamp - (remainder + slide) : timestamp - remainder
}

/**
 * The windows of a tumbling or sliding assigner that hold `timestamp`, latest first. A session
 * record's own window is `[t, t + gap)` before merging. (The operator runs the same loop without
 * the array.)
 */
export function assignWindows(assigner: WindowAssigner, timestamp: number): TimeWindow[] {
  switch (assigner.kind) {
    case 'tumbling': {
      const start = windowStart(timestamp, assigner.sizeMs, assigner.offsetMs)
      return [{ start, end: start + assigner.sizeMs }]
    }
    case 'sliding': {
      const out: TimeWindow[] = []
      for (let start = windowStart(timestamp, assigner.slideMs, assigner.offsetMs); start > timestamp - assigner.sizeMs; start -= assigner.slideMs) {
        out.push({ start, end: start + assigner.sizeMs })
      }
      return out
    }
    case 'session':
      return [{ start: timestamp, end: timestamp + assigner.gapMs }]
  }
}

/** The time at which a window fires: its largest timestamp, `end - 1`. */
export function fireTime(window: TimeWindow): number {
  return window.end - 1
}

/**
 * The time after which a window's state is cleared: `end - 1 + allowedLateness` for event time
 * (a record later than that is late for the window); `end - 1` for processing time, which has no
 * late records.
 */
export function cleanupTime(window: TimeWindow, domain: WindowTimeDomain, allowedLatenessMs: number): number {
  return domain === 'event-time' ? window.end - 1 + allowedLatenessMs : window.end - 1
}

/**
 * Whether a window can take no more records: the watermark passed its cleanup time, so its state
 * is (or will at once be) cleared. Processing-time windows are never late.
 */
export function isWindowLate(window: TimeWindow, domain: WindowTimeDomain, allowedLatenessMs: number, watermark: number): boolean {
  return domain === 'event-time' && cleanupTime(window, domain, allowedLatenessMs) <= watermark
}

/** Two windows overlap or touch, so session windows holding them merge (Flink's `TimeWindow.intersects`). */
export function windowsTouch(a: TimeWindow, b: TimeWindow): boolean {
  return a.start <= b.end && a.end >= b.start
}

/** What adding a record's window to a key's sessions does. */
export interface SessionMerge<W extends TimeWindow = TimeWindow> {
  /** The session the record belongs to now. */
  readonly window: TimeWindow
  /** The existing sessions it swallowed, in start order (empty: a new session). */
  readonly merged: readonly W[]
}

/**
 * Adds `added` to a key's `sessions` (pairwise apart, as this function keeps them): every session
 * that overlaps or touches `added` is merged with it into one window covering them all.
 */
export function mergeSession<W extends TimeWindow>(sessions: Iterable<W>, added: TimeWindow): SessionMerge<W> {
  let start = added.start
  let end = added.end
  const merged: W[] = []
  // One pass finds them all: the merged window is `added` plus the sessions touching it, and a
  // session touching that union but not `added` would touch another session, which they never do.
  for (const s of sessions) {
    if (windowsTouch(s, added)) {
      merged.push(s)
      if (s.start < start) start = s.start
      if (s.end > end) end = s.end
    }
  }
  merged.sort((a, b) => a.start - b.start)
  return { window: { start, end }, merged }
}
