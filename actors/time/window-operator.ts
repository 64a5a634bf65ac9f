/**
 * The window operator (docs/architecture.md section 18): `keyed.window(assigner)` followed by
 * `reduce`, `aggregate` or `process` adds an ordinary keyed `process` operator whose function
 * and `onTimer` are generated here. Every window's contents are keyed state of that operator and
 * its firing and clean-up are timers, so checkpoints, restores and rescaling need nothing of
 * their own.
 *
 * State of a window operator, per key (docs/architecture.md section 18):
 * * `windows`: value state, the key's open windows `{ start, end, value }` (`value`: the reduced
 *   value or accumulator of `reduce` and `aggregate`), replaced, never changed in place, which is
 *   what copy-on-write snapshots need;
 * * `window-end`, `window-value` (tumbling only): the key's latest window, apart from `windows`,
 *   so the usual record reads and writes primitives;
 * * `window-elements` (`process`): list state of `[timestamp, record]`, each record once however
 *   many windows hold it, a window's records being those with `start <= timestamp < end`.
 *
 * Timers, per key: an event-time timer at `end - 1` fires a window; one at `end - 1 + lateness`
 * clears it (the same timer when there is no lateness). Processing-time windows fire and clear
 * at `end - 1` on the processing-time clock; an event-time timer at `END_OF_INPUT` fires the
 * windows still open when the input ends (its watermark is +Infinity).
 *
 * This file holds the checks of a window definition and `windowProcess`, which makes the keyed
 * process; the types are actors/time/window-spec.ts, the per-record and per-timer logic
 * actors/time/window-logic.ts.
 */
import { JobDefinitionError, rejectAsync } from '../errors.ts'
import type { ProcessOptions } from '../api/options.ts'
import type { ProcessContext } from '../api/contexts.ts'
import type { Key } from '../state/key-groups.ts'
import { isOutputTag } from '../api/side-outputs.ts'
import { isWindowAssigner, type WindowAssigner } from './windows.ts'
import { WindowLogic } from './window-logic.ts'
import type { WindowAggregator, WindowContents, WindowDefinition, WindowFunction, WindowOptions } from './window-spec.ts'

/** Checks the lateness given to `allowedLateness`. */
export function checkLateness(ms: unknown, assigner: WindowAssigner, job: string): number {
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) {
    throw new JobDefinitionError(`allowedLateness must be a whole number of milliseconds >= 0, got ${String(ms)}`, job)
  }
  if (assigner.domain !== 'event-time') throw new JobDefinitionError('allowedLateness applies to event-time windows only; processing-time windows have no late records', job)
  return ms
}

/** Checks the tag given to `lateOutput`. */
export function checkLateOutput(tag: unknown, assigner: WindowAssigner, job: string): void {
  if (!isOutputTag(tag)) throw new JobDefinitionError('lateOutput needs an output tag, e.g. outputTag<Reading>("late")', job)
  if (assigner.domain !== 'event-time') throw new JobDefinitionError('lateOutput applies to event-time windows only; processing-time windows have no late records', job)
}

/** Checks the assigner given to `window`. */
export function checkAssigner(assigner: unknown, job: string): void {
  if (!isWindowAssigner(assigner)) throw new JobDefinitionError('window needs a window assigner, e.g. tumblingEventTimeWindows(60_000)', job)
}

function checkFunction(fn: unknown, problem: string, job: string, operator: string): void {
  if (typeof fn !== 'function') throw new JobDefinitionError(problem, job, operator)
  rejectAsync(fn, 'a window function', job, operator)
}

/** What a window operator keeps and how it combines records, checked: `reduce`, `aggregate` or `process`. */
export function windowContents(kind: WindowContents['kind'], given: unknown, assigner: WindowAssigner, job: string, operator: string): WindowContents {
  switch (kind) {
    case 'reduce':
      checkFunction(given, 'reduce needs a function (a, b) => reduced', job, operator)
      return { kind, reduce: given as (a: unknown, b: unknown) => unknown }
    case 'process':
      checkFunction(given, 'process needs a window function (key, window, records) => value', job, operator)
      return { kind, fn: given as WindowFunction<unknown, Key, unknown> }
    case 'aggregate': {
      const aggregator = given as WindowAggregator<unknown, unknown, unknown>
      if (typeof aggregator !== 'object' || aggregator === null) throw new JobDefinitionError('aggregate needs an aggregator { createAccumulator, add, getResult, merge? }', job, operator)
      for (const fn of ['createAccumulator', 'add', 'getResult'] as const) checkFunction(aggregator[fn], `the aggregator needs ${fn}()`, job, operator)
      if (aggregator.merge !== undefined) checkFunction(aggregator.merge, 'the aggregator merge must be a function (a, b) => merged', job, operator)
      else if (assigner.kind === 'session') throw new JobDefinitionError('session windows merge, so their aggregator needs merge(a, b) to combine two accumulators', job, operator)
      return { kind, aggregator }
    }
  }
}

/**
 * The keyed process a window operator is: its options (the window states, `onTimer`) and its
 * function. The stream adds it as any keyed `process`.
 */
export function windowProcess(job: string, name: string, window: WindowDefinition, contents: WindowContents, options: unknown): { options: ProcessOptions; fn: (record: unknown, ctx: ProcessContext<Key, unknown>) => void } {
  if (typeof options !== 'object' || options === null) throw new JobDefinitionError('window options must be an object', job, name)
  for (const k of Object.keys(options)) {
    if (k !== 'parallelism' && k !== 'result') throw new JobDefinitionError(`unknown window option ${k} (known: parallelism, result)`, job, name)
  }
  const { result, ...rest } = options as WindowOptions<Key, unknown, unknown>
  if (result !== undefined) checkFunction(result, 'result must be a function (key, window, value) => record', job, name)
  const logic = new WindowLogic({ operator: name, ...window, contents, result })
  return {
    options: { ...rest, state: logic.states, onTimer: (time, ctx) => logic.timer(time, ctx) },
    fn: (record, ctx) => logic.element(record, ctx),
  }
}
