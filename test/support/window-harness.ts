/**
 * Drives a window operator's logic the way a keyed instance does under the timers contract of
 * issue 7, without a job: real heap-backend state (strict), a timer service per key with at most
 * one timer per (key, domain, time), a watermark that only moves forward and fires event-time
 * timers up to it in time order, a processing-time clock in the test's hands, and side outputs
 * collected per tag. Fast and deterministic, for the window semantics; the tests of the real
 * runtime are in test/actors/windows-runtime.test.ts.
 */
import { HeapKeyedBackend } from '../../actors/state/heap-backend.ts'
import { keyGroupOf, type Key } from '../../actors/state/key-groups.ts'
import type { StateDescriptor } from '../../actors/api/state.ts'
import type { OutputTag } from '../../actors/api/side-outputs.ts'
import { WindowLogic } from '../../actors/time/window-logic.ts'
import type { WindowContents } from '../../actors/time/window-spec.ts'
import type { TimeWindow, WindowAssigner } from '../../actors/time/windows.ts'

const MAX_P = 8

type Domain = 'event-time' | 'processing-time'

export interface HarnessOptions {
  assigner: WindowAssigner
  contents: WindowContents
  lateness?: number
  lateTag?: OutputTag<unknown>
  result?: (key: Key, window: TimeWindow, value: unknown) => unknown
}

export class WindowHarness {
  readonly logic: WindowLogic
  readonly backend: HeapKeyedBackend
  readonly out: unknown[] = []
  readonly side = new Map<string, unknown[]>()
  watermark = -Infinity
  now = 0
  /** Pending timers: `${domain}|${time}` -> keys. */
  private readonly timers = new Map<string, Set<Key>>()
  private key: Key = ''
  private timestamp: number | undefined
  private timeDomain: Domain = 'event-time'

  constructor(o: HarnessOptions) {
    this.logic = new WindowLogic({ operator: 'w', assigner: o.assigner, lateness: o.lateness ?? 0, lateTag: o.lateTag, contents: o.contents, result: o.result })
    this.backend = new HeapKeyedBackend(Object.values(this.logic.states) as StateDescriptor[], { start: 0, end: MAX_P - 1 }, { operator: 'w', strictState: true })
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this
    this.ctx = {
      instance: 0,
      get key(): Key {
        return self.key
      },
      get timestamp(): number | undefined {
        return self.timestamp
      },
      get timeDomain(): Domain {
        return self.timeDomain
      },
      timers: this.timerService,
      state: (d: StateDescriptor) => this.backend.handle(d) as never,
      emit: (r: unknown) => this.out.push(r),
      output: (tag: OutputTag<unknown>, r: unknown) => {
        const list = this.side.get(tag.id) ?? []
        list.push(r)
        this.side.set(tag.id, list)
      },
    }
  }

  private readonly ctx: object

  private readonly timerService = {
    currentProcessingTime: () => this.now,
    currentWatermark: () => this.watermark,
    registerEventTimeTimer: (time: number) => this.register('event-time', time),
    registerProcessingTimeTimer: (time: number) => this.register('processing-time', time),
    deleteEventTimeTimer: (time: number) => this.timers.get(`event-time|${time}`)?.delete(this.key),
    deleteProcessingTimeTimer: (time: number) => this.timers.get(`processing-time|${time}`)?.delete(this.key),
  }

  private register(domain: Domain, time: number): void {
    if (!Number.isFinite(time)) throw new Error(`timer at ${time}`)
    const id = `${domain}|${time}`
    let keys = this.timers.get(id)
    if (keys === undefined) this.timers.set(id, (keys = new Set()))
    keys.add(this.key)
  }

  private bind(key: Key): void {
    this.key = key
    this.backend.setCurrentKey(key, keyGroupOf(key, MAX_P))
  }

  /** A record of `key` with event time `timestamp` (undefined: none). */
  element(key: Key, record: unknown, timestamp?: number): void {
    this.bind(key)
    this.timestamp = timestamp
    this.logic.element(record, this.ctx as never)
  }

  /** Moves the watermark forward and fires every event-time timer at or below it, in time order. */
  advanceWatermark(to: number): void {
    if (to <= this.watermark) return
    this.watermark = to
    this.fireDue('event-time', to)
  }

  /** Moves the processing-time clock and fires the processing-time timers due. */
  advanceClock(to: number): void {
    this.now = to
    this.fireDue('processing-time', to)
  }

  /** End of input: a watermark of +Infinity; pending processing-time timers are dropped. */
  end(): void {
    this.advanceWatermark(Infinity)
    for (const id of [...this.timers.keys()]) if (id.startsWith('processing-time|')) this.timers.delete(id)
  }

  pendingTimers(domain: Domain): number[] {
    return [...this.timers.entries()].filter(([id, keys]) => id.startsWith(domain) && keys.size > 0).map(([id]) => Number(id.split('|')[1])).sort((a, b) => a - b)
  }

  private fireDue(domain: Domain, upTo: number): void {
    for (;;) {
      let next: number | undefined
      for (const [id, keys] of this.timers) {
        const [d, t] = id.split('|')
        if (d === domain && keys.size > 0 && Number(t) <= upTo && (next === undefined || Number(t) < next)) next = Number(t)
      }
      if (next === undefined) return
      const id = `${domain}|${next}`
      const keys = [...this.timers.get(id)!].sort()
      this.timers.delete(id)
      for (const key of keys) {
        this.bind(key)
        this.timestamp = next
        this.timeDomain = domain
        this.logic.timer(next, this.ctx as never)
      }
    }
  }
}

