/**
 * Restores an attempt's instances from a snapshot (docs/architecture.md sections 6 and 16): the
 * snapshot is verified against its manifest first, then each instance loads its key groups,
 * broadcast and operator state, source offset, in-flight messages (section 15) and timers
 * (section 17), redistributed when the parallelism changed. Runs once, before the first record.
 */
import type { ChunkFilter, SnapshotStore, StateChunk } from '../../persistence/store.ts'
import { KEYED_CHUNK_FORMAT } from '../../persistence/keyed-chunk.ts'
import { CorruptSnapshotError, describeChunk, WeirError } from '../../persistence/errors.ts'
import { describeValue, IncompatibleSnapshotError, MisplacedKeyError } from '../errors.ts'
import type { Instance } from './instance.ts'
import { ProcessInstance } from './process-instance.ts'
import { SinkInstance } from './sink-instance.ts'
import { SourceInstance } from './source-instance.ts'
import type { JobGraph } from '../api/graph.ts'
import { OperatorProcessInstance } from './operator-process-instance.ts'
import { decodeOperatorChunk, sourceRestoreOffset, type OperatorChunk } from '../state/operator-state.ts'
import { CHANNEL_CHUNK_FORMAT, decodeChannelChunk } from './message-recording.ts'
import { TIMERS_CHUNK_FORMAT } from '../time/timers.ts'

/**
 * Loads every instance's key groups and offsets from snapshot `id` of `graph`'s job, after
 * verifying it against its manifest. Throws `CorruptSnapshotError` if it fails, or if a key lies
 * in the wrong key group; `IncompatibleSnapshotError` if an instance cannot take its state.
 */
export async function restoreInstances(instances: readonly Instance[], store: SnapshotStore, graph: JobGraph, id: number): Promise<void> {
  const job = graph.name
  // Before any state is loaded: the snapshot holds every chunk its manifest lists, unchanged.
  await store.verifySnapshot(job, id)
  // The operator chunks of every old instance of an operator, decoded once: on a rescale an
  // instance's operator state comes from all of them (docs/architecture.md section 16).
  const operatorChunks = new Map<string, Promise<(OperatorChunk | undefined)[]>>()
  const oldChunks = (uid: string) => {
    let p = operatorChunks.get(uid)
    if (p === undefined) {
      p = store.readChunks(job, id, { operatorUid: uid, kind: 'operator' }).then((chunks) => {
        const out: (OperatorChunk | undefined)[] = []
        for (const c of chunks) out[c.index] = decodeOperatorChunk(c.format, c.data)
        return Array.from(out)
      })
      operatorChunks.set(uid, p)
    }
    return p
  }
  // The `channel` chunks of each operator, read once: every instance takes its key groups' messages.
  const recordedMessages = new Map<string, StateChunk[]>()
  for (const inst of instances) {
    inst.lifecycle.send({ type: 'RESTORE' })
    const uid = inst.spec.uid
    const read = (filter: ChunkFilter) => store.readChunks(job, id, filter)
    const parallelism = inst.spec.parallelism
    try {
      if (inst instanceof ProcessInstance) {
        const { start, end } = inst.backend.range
        const indexes = Array.from({ length: end - start + 1 }, (_, k) => start + k)
        for (const chunk of await read({ operatorUid: uid, kind: 'keyed', indexes })) {
          if (chunk.format > KEYED_CHUNK_FORMAT) throw new Error(`keyed chunk format ${chunk.format} is newer than this Weir reads`)
          if (chunk.data.byteLength > 0) inst.backend.restoreGroup(chunk.index, chunk.data, graph.maxParallelism)
        }
        inst.broadcast?.restore(await oldChunks(uid), inst.index)
        // Messages that were in flight on cyclic channels, whichever old instance recorded them
        // (section 15): this instance keeps those of its key groups and processes them first.
        let channelChunks = recordedMessages.get(uid)
        if (channelChunks === undefined) recordedMessages.set(uid, (channelChunks = await read({ operatorUid: uid, kind: 'channel' })))
        for (const chunk of channelChunks) {
          if (chunk.format > CHANNEL_CHUNK_FORMAT) throw new Error(`channel chunk format ${chunk.format} is newer than this Weir reads`)
          const batches = decodeChannelChunk(chunk.data, inst.backend.range)
          if (batches.length > 0 && inst.spec.kind === 'process' && inst.spec.onMessage === undefined) {
            throw new Error('the snapshot holds messages in flight to it, but it has no onMessage any more; give it its onMessage back to restore them')
          }
          inst.restoreMessages(batches)
        }
        // A snapshot taken before the operator had timers simply has none (docs/architecture.md section 17).
        if (inst.timers !== undefined) {
          for (const chunk of await read({ operatorUid: uid, kind: 'timers', indexes })) {
            if (chunk.format > TIMERS_CHUNK_FORMAT) throw new Error(`timers chunk format ${chunk.format} is newer than this Weir reads`)
            if (chunk.data.byteLength > 0) inst.timers.restoreGroup(chunk.index, chunk.data, graph.maxParallelism)
          }
        }
      } else if (inst instanceof SourceInstance) {
        const rescalable = inst.spec.kind === 'source' && inst.spec.source.rescalable === true
        const restored = sourceRestoreOffset(await oldChunks(uid), inst.index, parallelism, rescalable)
        if (restored !== undefined) await inst.reader.restore?.(restored.offset)
      } else if (inst instanceof OperatorProcessInstance || (inst instanceof SinkInstance && inst.lists !== undefined)) {
        inst.lists!.restore(await oldChunks(uid), inst.index, parallelism)
      }
    } catch (err) {
      if (err instanceof MisplacedKeyError) {
        const chunk = describeChunk({ operatorUid: uid, kind: 'keyed', index: err.keyGroup })
        throw new CorruptSnapshotError(job, id, [`${chunk} holds key ${describeValue(err.key)} of key group ${err.actualKeyGroup} (moved)`], { cause: err })
      }
      if (err instanceof WeirError) throw err
      throw new IncompatibleSnapshotError(`cannot restore ${inst.id}: ${(err as Error).message}`, job, id, uid)
    }
  }
}
