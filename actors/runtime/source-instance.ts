/**
 * A source instance: polls its reader in bounded batches, emits the barriers it is asked for
 * between polls, and, with a watermark strategy, stamps records with event time and generates
 * watermarks and idleness (docs/architecture.md section 17).
 */
import { systemClock, type Clock } from '../time/clock.ts'
import type { SourceReader } from '../connectors/types.ts'
import { WeirError } from '../../persistence/errors.ts'
import { UserCodeError } from '../errors.ts'
import type { OperatorSpec, SourceSpec } from '../api/graph.ts'
import type { EdgeOutput } from './output.ts'
import { sourceChunk } from '../state/operator-state.ts'
import { Instance, type InstanceHost } from './instance.ts'

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
