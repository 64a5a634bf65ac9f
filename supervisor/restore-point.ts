/**
 * Which snapshot a job restores from, and whether it fits the job: the layout every snapshot of a
 * graph must hold, the newest completed snapshot that verifies, and the checks that refuse one
 * the job cannot restore. Shared by the local runner and the cluster's coordinator.
 */
import { IncompatibleSnapshotError } from '../actors/errors.ts'
import { canRescale, writesOperatorChunk, type JobGraph } from '../actors/api/graph.ts'
import type { Logger } from '../actors/runtime/logger.ts'
import { receivesRecorded } from '../actors/runtime/messages.ts'
import { CorruptSnapshotError } from '../persistence/errors.ts'
import type { ChunkKind } from '../persistence/snapshot-kinds.ts'
import type { SnapshotInfo, SnapshotLayout, SnapshotStore } from '../persistence/store.ts'

/**
 * What every snapshot of `graph` must hold, so a snapshot missing a key group (empty ones
 * included) or a source offset can never be completed or restored.
 */
export function snapshotLayout(graph: JobGraph): SnapshotLayout {
  return {
    maxParallelism: graph.maxParallelism,
    operators: graph.operators.map((o) => ({ uid: o.uid, parallelism: o.parallelism, ...requiredChunks(graph, o) })),
  }
}

/**
 * The newest completed snapshot that verifies against its manifest; each newer one that does
 * not is skipped with a warning. If none verifies, the newest one's error: starting from nothing
 * while completed snapshots exist must be asked for (`restore: 'none'`).
 */
export async function newestVerifiedSnapshot(store: SnapshotStore, graph: JobGraph, log: Logger, below = Infinity): Promise<SnapshotInfo | undefined> {
  const job = graph.name
  const completed = (await store.listSnapshots(job)).filter((s) => s.status === 'completed' && s.id < below).reverse()
  if (completed.length === 0) {
    if (below !== Infinity) return undefined
    log.info('no completed snapshot to restore; starting from scratch')
    return undefined
  }
  let first: CorruptSnapshotError | undefined
  for (const s of completed) {
    try {
      await store.verifySnapshot(job, s.id)
    } catch (err) {
      if (!(err instanceof CorruptSnapshotError)) throw err
      first ??= err
      log.warn(`skipping snapshot ${s.id}: it fails verification`, { snapshot: s.id, error: err.message })
      continue
    }
    checkSnapshotLayout(graph, s)
    return s
  }
  throw first!
}

/** Refuses a snapshot the job cannot restore: another maxParallelism, an operator gone, a parallelism that cannot change. */
export function checkSnapshotLayout(graph: JobGraph, s: SnapshotInfo): void {
  const job = graph.name
  if (s.layout.maxParallelism !== graph.maxParallelism) {
    throw new IncompatibleSnapshotError(
      `maxParallelism is ${s.layout.maxParallelism} in the snapshot but ${graph.maxParallelism} in the job; it cannot change across a restore (set it back to ${s.layout.maxParallelism})`,
      job,
      s.id,
    )
  }
  for (const op of s.layout.operators) {
    const now = graph.operators.find((o) => o.uid === op.uid)
    if (now === undefined) throw new IncompatibleSnapshotError(`the snapshot has state of operator ${op.uid}, which the job no longer has`, job, s.id, op.uid)
    if (!canRescale(now) && now.parallelism !== op.parallelism) {
      const why =
        now.kind === 'source'
          ? `source ${op.uid} (${now.source.kind}) cannot be rescaled: its readers' positions cannot be handed to other instances (a source that can declares rescalable: true, e.g. generatorSource with splits)`
          : 'only keyed operators, non-keyed process operators, rescalable sources and sinks with operator state can be rescaled'
      throw new IncompatibleSnapshotError(`parallelism of ${op.uid} changed from ${op.parallelism} to ${now.parallelism}; ${why}. Set its parallelism back to ${op.parallelism}`, job, s.id, op.uid)
    }
  }
}

/** The chunk kinds every snapshot must hold for `op` (keyed state per key group, operator state per instance). */
function requiredChunks(graph: JobGraph, op: JobGraph['operators'][number]): { chunks?: ChunkKind[] } {
  const chunks: ChunkKind[] = []
  if (op.kind === 'process') chunks.push('keyed')
  if (op.kind === 'process' && op.onTimer !== undefined) chunks.push('timers')
  if (op.kind === 'process' && receivesRecorded(graph, op.uid)) chunks.push('channel')
  if (writesOperatorChunk(op)) chunks.push('operator')
  return chunks.length === 0 ? {} : { chunks }
}
