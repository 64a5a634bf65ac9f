/** The kinds of snapshots' parts, apart from the store interface so that errors can name them too. */

/** Where a snapshot is in its life. */
export type SnapshotStatus = 'pending' | 'completed' | 'aborted'

/**
 * What a chunk holds. `keyed`: the keyed state of one key group (`index` = key group).
 * `operator`: the operator state of one instance (`index` = instance index), e.g. source offsets.
 * Reserved for the issues that add them: `timers`, the timers of one key group (`index` = key
 * group), and `channel`, the recorded in-flight messages of one instance (`index` = instance).
 */
export type ChunkKind = 'keyed' | 'operator' | 'timers' | 'channel'

/** True for the kinds addressed by key group (the others by instance index). */
export function isKeyGroupKind(kind: ChunkKind): boolean {
  return kind === 'keyed' || kind === 'timers'
}
