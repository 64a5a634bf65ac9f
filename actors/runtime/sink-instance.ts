/**
 * A sink instance: hands each batch to its writer, and its operator lists (if the sink declares
 * `operatorState`) to the snapshot (docs/architecture.md section 16).
 */
import type { CheckpointMode } from './alignment.ts'
import type { RecordBatch } from './channel.ts'
import type { SinkWriter } from '../connectors/types.ts'
import { WeirError } from '../../persistence/errors.ts'
import { UserCodeError } from '../errors.ts'
import type { OperatorSpec } from '../api/graph.ts'
import { encodeOperatorChunk, type OperatorListStates } from '../state/operator-state.ts'
import type { InputChannel, InstanceHost } from './instance.ts'
import { ConsumingInstance } from './consuming-instance.ts'

/** A sink instance: hands batches to its writer. */
export class SinkInstance extends ConsumingInstance {
  constructor(
    spec: OperatorSpec,
    index: number,
    inputs: readonly InputChannel[],
    host: InstanceHost,
    mode: CheckpointMode,
    readonly writer: SinkWriter<unknown>,
    /** The writer's operator lists, if the sink declares `operatorState` (docs/architecture.md section 16). */
    readonly lists?: OperatorListStates,
  ) {
    super(spec, index, inputs, [], host, mode)
  }

  protected override operatorState(): unknown {
    return this.lists === undefined ? undefined : encodeOperatorChunk({ lists: this.lists.snapshot() })
  }

  protected process(batch: RecordBatch): void {
    try {
      this.writer.write(batch.records)
    } catch (err) {
      throw err instanceof WeirError ? err : new UserCodeError(this.spec.uid, this.index, undefined, err)
    }
  }
}
