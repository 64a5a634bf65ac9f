/**
 * The instance of a non-keyed `process` operator: a user function per record with operator list
 * state (docs/architecture.md section 16).
 */
import type { CheckpointMode } from './alignment.ts'
import type { RecordBatch } from './channel.ts'
import { WeirError } from '../../persistence/errors.ts'
import { asyncResultError, UserCodeError } from '../errors.ts'
import type { InputChannel, InstanceHost } from './instance.ts'
import { ConsumingInstance } from './consuming-instance.ts'
import type { OperatorProcessSpec } from '../api/graph.ts'
import { encodeOperatorChunk, OperatorListStates, type OperatorContext, type OperatorListStateDescriptor } from '../state/operator-state.ts'
import type { EdgeOutput } from './output.ts'
import type { ListState } from '../api/state.ts'

export class OperatorProcessInstance extends ConsumingInstance {
  readonly lists: OperatorListStates
  private readonly ctx: { timestamp: number | undefined } & OperatorContext<unknown>
  private readonly fn: OperatorProcessSpec['fn']

  constructor(spec: OperatorProcessSpec, index: number, inputs: readonly InputChannel[], outputs: readonly EdgeOutput[], host: InstanceHost, mode: CheckpointMode, strictState = false) {
    super(spec, index, inputs, outputs, host, mode)
    const lists = (this.lists = new OperatorListStates(spec.states, spec.uid, strictState))
    this.fn = spec.fn
    this.ctx = {
      timestamp: undefined,
      instance: index,
      emit: this.emitAll,
      state<T>(descriptor: OperatorListStateDescriptor<T>): ListState<T> {
        return lists.handle(descriptor as OperatorListStateDescriptor<unknown>) as ListState<T>
      },
    }
  }

  /** The lists, encoded now as an operator chunk. */
  protected override operatorState(): unknown {
    return encodeOperatorChunk({ lists: this.lists.snapshot() })
  }

  protected process(batch: RecordBatch): void {
    const fn = this.fn
    const ctx = this.ctx
    const records = batch.records
    const stamps = batch.timestamps
    ctx.timestamp = undefined
    try {
      for (let i = 0; i < records.length; i++) {
        if (stamps !== undefined) {
          // Event time passes through: what the function emits carries its record's time.
          const t = stamps[i]!
          ctx.timestamp = t === t ? t : undefined
          this.stamp(t)
        }
        const returned = fn(records[i], ctx) as unknown
        if (returned !== undefined) {
          const error = asyncResultError(returned, this.spec.uid, this.index, undefined)
          if (error !== undefined) throw error
        }
      }
    } catch (err) {
      if (err instanceof WeirError) throw err
      throw new UserCodeError(this.spec.uid, this.index, undefined, err)
    }
  }
}
