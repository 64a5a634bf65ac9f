/**
 * `operatorHarness`: drives one keyed operator of a job by hand, as Flink's keyed operator test
 * harnesses do: a record, a watermark, a step of the processing-time clock at a time, and after
 * each, what the operator emitted, its state per key and its pending timers. It runs the
 * operator's real instance (the runtime's own `ProcessInstance`) with in-memory channels, strict
 * state on, as the only instance of its operator.
 */
import type { LocalChannel as LocalChannelType, ChannelItem } from '../actors/runtime/channel.ts'
import { LocalChannel } from '../actors/runtime/channel.ts'
import type { Clock } from '../actors/time/clock.ts'
import type { InstanceHost } from '../actors/runtime/instance.ts'
import { ProcessInstance } from '../actors/runtime/process-instance.ts'
import type { EdgeSpec, JobGraph, ProcessSpec } from '../actors/api/graph.ts'
import type { JobBuilder } from '../actors/api/streams.ts'
import { keyGroupOf, keyGroupRange, type Key } from '../actors/state/key-groups.ts'
import { EdgeOutput } from '../actors/runtime/output.ts'
import type { OutputTag } from '../actors/api/side-outputs.ts'
import type { StateDescriptor } from '../actors/api/state.ts'
import type { TimeDomain } from '../actors/time/timers.ts'
import { ManualClock } from './manual-clock.ts'

/** A record the operator emitted, with its event time (undefined: none). */
export interface HarnessRecord<T = unknown> {
  record: T
  timestamp: number | undefined
}

/** A timer the operator holds. */
export interface PendingTimer {
  key: Key
  domain: TimeDomain
  time: number
}

/** Options of {@link operatorHarness}. */
export interface OperatorHarnessOptions {
  /** Processing time of the operator. @default a ManualClock at 0 */
  clock?: ManualClock
}

/** One keyed operator driven by hand; see {@link operatorHarness}. */
export interface OperatorHarness {
  /** Processing time, moved with {@link OperatorHarness.setProcessingTime}. */
  readonly clock: ManualClock
  /** Hands the operator a record of `input` (0, or 1 for the second stream of a connect), with an event time or none. */
  process(record: unknown, options?: { timestamp?: number; input?: 0 | 1 }): void
  /** A watermark on every input: event-time timers up to `time` fire. */
  watermark(time: number): void
  /** Moves processing time to `ms`: processing-time timers due by then fire. */
  setProcessingTime(ms: number): void
  /** Ends every input: the final watermark fires every event-time timer. */
  endInput(): void
  /** What the operator emitted on its main output so far (and forgets it). */
  takeOutput<T = unknown>(): HarnessRecord<T>[]
  /** What the operator sent to side output `tag` so far (and forgets it). */
  takeSideOutput<T>(tag: OutputTag<T>): HarnessRecord<T>[]
  /** The value of `state` for `key`, as the operator's handle returns it (a map state as a Map). */
  state(state: StateDescriptor, key: Key): unknown
  /** The timers the operator holds, by time. */
  pendingTimers(): PendingTimer[]
  /** The operator's watermark (-Infinity before the first). */
  currentWatermark(): number
}

const NO_HOST: InstanceHost = { snapshotTaken() {}, instanceFinished() {}, transitioned() {} }

/**
 * Drives keyed operator `operator` of `job` by hand. Records go in as they would arrive at the
 * operator (after the transforms before its `keyBy`), keyed with the job's own key selector.
 * @example
 * const h = operatorHarness(myJob, 'totals')
 * h.process({ account: 'a', cents: 5 }, { timestamp: 1_000 })
 * h.watermark(60_000)
 * t.same(h.takeOutput().map((o) => o.record), [{ account: 'a', total: 5 }])
 * t.same(h.pendingTimers(), [])
 */
export function operatorHarness(definition: JobBuilder | JobGraph, operator: string, options: OperatorHarnessOptions = {}): OperatorHarness {
  const graph = 'graph' in definition && typeof definition.graph === 'function' ? definition.graph() : (definition as JobGraph)
  const spec = graph.operators.find((o) => o.uid === operator)
  if (spec === undefined || spec.kind !== 'process') {
    const keyed = graph.operators.filter((o) => o.kind === 'process').map((o) => o.uid)
    throw new Error(`operatorHarness: job ${graph.name} has no keyed operator ${operator} (keyed operators: ${keyed.join(', ') || 'none'})`)
  }
  const clock = options.clock ?? new ManualClock(0)
  const maxP = graph.maxParallelism
  const edgesIn = (input: number) => graph.edges.filter((e) => e.to === operator && e.input === input)
  const inputs = [0, 1].filter((i) => edgesIn(i).length > 0).map((input) => ({ channel: new LocalChannel(Number.MAX_SAFE_INTEGER), input }))
  // One capture channel for the main output and one per side output the job reads.
  const captures = new Map<string | undefined, LocalChannelType>()
  const outputs: EdgeOutput[] = []
  for (const e of graph.edges.filter((x) => x.from === operator)) {
    if (captures.has(e.tag)) continue
    const c = new LocalChannel(Number.MAX_SAFE_INTEGER)
    captures.set(e.tag, c)
    const edge: EdgeSpec = { from: operator, to: `${operator}.harness`, input: 0, partitioning: 'forward', keySelector: undefined, transforms: [], ...(e.tag === undefined ? {} : { tag: e.tag }) }
    outputs.push(new EdgeOutput(edge, [c], maxP, 1, 0, true))
  }
  const inst = new ProcessInstance(spec as ProcessSpec, 0, inputs, outputs, NO_HOST, 'exactly-once', keyGroupRange(0, 1, maxP), true, clock as Clock)
  inst.lifecycle.send({ type: 'RUN' })

  const run = () => {
    while (inst.step(1024) > 0) {
      /* until nothing is left to do */
    }
  }
  const push = (item: ChannelItem) => {
    for (const i of inputs) i.channel.push(item)
    run()
  }
  const take = (c: LocalChannelType | undefined): HarnessRecord<never>[] => {
    const out: HarnessRecord<never>[] = []
    for (let item = c?.shift(); item !== undefined; item = c?.shift()) {
      if (item.type !== 'records') continue
      item.records.forEach((record, i) => {
        const t = item.timestamps?.[i]
        out.push({ record: record as never, timestamp: t === undefined || Number.isNaN(t) ? undefined : t })
      })
    }
    return out
  }
  const backend = inst.backend

  return {
    clock,
    process(record, o = {}) {
      const input = o.input ?? 0
      const channel = inputs.find((i) => i.input === input)
      const edge = edgesIn(input)[0]
      if (channel === undefined || edge?.keySelector === undefined) throw new Error(`operatorHarness: operator ${operator} has no keyed input ${input}`)
      const key = edge.keySelector(record)
      channel.channel.push({ type: 'records', records: [record], keys: [key], groups: [keyGroupOf(key, maxP)], ...(o.timestamp === undefined ? {} : { timestamps: [o.timestamp] }) } as ChannelItem)
      run()
    },
    watermark(time) {
      push({ type: 'watermark', time })
    },
    setProcessingTime(ms) {
      clock.set(ms)
      run()
    },
    endInput() {
      push({ type: 'end' })
    },
    takeOutput<T>() {
      return take(captures.get(undefined)) as HarnessRecord<T>[]
    },
    takeSideOutput<T>(tag: OutputTag<T>) {
      return take(captures.get(tag.id)) as HarnessRecord<T>[]
    },
    state(state, key) {
      const handle = backend.handle(state) as Record<string, () => unknown> | undefined
      if (handle === undefined) throw new Error(`operatorHarness: operator ${operator} declares no state ${state.name}`)
      backend.currentKey = key
      backend.currentIndex = keyGroupOf(key, maxP) - backend.range.start
      switch (state.kind) {
        case 'value':
          return handle['value']!()
        case 'map':
          return new Map(handle['entries']!() as Iterable<[unknown, unknown]>)
        default:
          return handle['get']!()
      }
    },
    pendingTimers() {
      return (inst.timers?.pending() ?? []).map(([domain, key, time]) => ({ key, domain, time })).sort((a, b) => a.time - b.time || String(a.key).localeCompare(String(b.key)))
    },
    currentWatermark() {
      return inst.watermark
    },
  }
}
