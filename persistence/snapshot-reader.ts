/**
 * Reads keyed state out of a completed snapshot, offline (no running job): for tests,
 * inspection and the state processor to come (docs/architecture.md section 9).
 */
import { decodeKeyedChunk, type Key } from './keyed-chunk.ts'
import type { SnapshotStore } from './store.ts'

/**
 * The entries of one keyed state of an operator in snapshot `snapshotId` (or the latest
 * completed one). Values written with a custom serde come back as the bytes it produced. Values
 * of a state with TTL come back without their last-access times (expired ones were left out
 * when the snapshot was written).
 * @example
 * const totals = await readSnapshotState(store, 'payments', 'totals', 'total')
 * totals.get('acct-7') // 1234
 */
export async function readSnapshotState(
  store: SnapshotStore,
  job: string,
  operatorUid: string,
  stateName: string,
  snapshotId?: number,
): Promise<Map<Key, unknown>> {
  const id = snapshotId ?? (await store.latestCompleted(job))?.id
  if (id === undefined) throw new Error(`job ${job} has no completed snapshot`)
  const out = new Map<Key, unknown>()
  for (const chunk of await store.readChunks(job, id, { operatorUid, kind: 'keyed' })) {
    // An empty key group is written as a chunk of no bytes, so the manifest lists it.
    if (chunk.data.byteLength === 0) continue
    for (const s of decodeKeyedChunk(chunk.data)) {
      if (s.name !== stateName) continue
      for (let i = 0; i < s.entries.length; i += 2) out.set(s.entries[i] as Key, s.ttlMs === undefined ? s.entries[i + 1] : withoutTimes(s.kind, s.entries[i + 1]))
    }
  }
  return out
}

/** A value of a state with TTL without its `[value, time]` pairs (keyed-chunk.ts format 2). */
function withoutTimes(kind: string, w: unknown): unknown {
  if (kind === 'list') return (w as [unknown, number][]).map((e) => e[0])
  if (kind === 'map') return new Map([...(w as Map<unknown, [unknown, number]>)].map(([k, e]) => [k, e[0]]))
  return (w as [unknown, number])[0]
}
