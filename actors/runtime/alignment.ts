/**
 * Barrier alignment (docs/architecture.md section 6, step 3), as pure bookkeeping: which input channels
 * are held, and when an instance with several inputs takes its snapshot.
 *
 * Exactly-once: a channel that delivered barrier n is held until barrier n arrived on every
 * channel. At-least-once: nothing is held; the snapshot is taken when the last barrier arrives.
 * A channel that ended counts as having delivered every barrier.
 */

export type CheckpointMode = 'exactly-once' | 'at-least-once'

/** What the instance must do after telling the aligner about a barrier or an end. */
export interface AlignmentStep {
  /** Take the snapshot of this checkpoint now (and forward its barrier). */
  snapshot?: number
  /** Alignment of this checkpoint was given up because a newer barrier overtook it. */
  aborted?: number
}

const NOTHING: AlignmentStep = Object.freeze({})

export class BarrierAligner {
  private readonly arrived: boolean[]
  private readonly ended: boolean[]
  private pending: number | undefined
  private last = 0
  private arrivedCount = 0
  private endedCount = 0
  /** At-least-once: channels that already delivered barriers newer than the pending one. */
  private readonly later = new Map<number, Set<number>>()

  constructor(
    readonly channels: number,
    readonly mode: CheckpointMode,
  ) {
    this.arrived = new Array<boolean>(channels).fill(false)
    this.ended = new Array<boolean>(channels).fill(false)
  }

  /** The checkpoint being aligned, if any. */
  get aligning(): number | undefined {
    return this.pending
  }

  /** The newest checkpoint this instance snapshotted. */
  get lastSnapshot(): number {
    return this.last
  }

  /** True if records of this channel must wait (exactly-once, barrier seen, others pending). */
  isHeld(channel: number): boolean {
    return this.mode === 'exactly-once' && this.pending !== undefined && this.arrived[channel] === true
  }

  /** Barrier `id` arrived on `channel`. */
  onBarrier(channel: number, id: number): AlignmentStep {
    if (id <= this.last) return NOTHING
    if (this.mode === 'at-least-once' && this.pending !== undefined && id > this.pending) {
      // Nothing is held, so with several checkpoints in flight a channel can deliver the next
      // barrier before another channel delivered this one: remember it, do not abort.
      let seen = this.later.get(id)
      if (seen === undefined) this.later.set(id, (seen = new Set()))
      seen.add(channel)
      return this.complete(undefined)
    }
    let aborted: number | undefined
    if (this.pending !== undefined && id > this.pending) {
      aborted = this.pending
      this.reset()
    }
    if (this.pending === undefined) this.pending = id
    if (id < this.pending || this.arrived[channel] === true) return aborted === undefined ? NOTHING : { aborted }
    this.arrived[channel] = true
    this.arrivedCount++
    return this.complete(aborted)
  }

  /** `channel` delivered its last record. */
  onEnd(channel: number): AlignmentStep {
    if (this.ended[channel] === true) return NOTHING
    this.ended[channel] = true
    this.endedCount++
    if (this.pending === undefined) return NOTHING
    if (this.arrived[channel] === true) {
      this.arrived[channel] = false
      this.arrivedCount--
    }
    return this.complete(undefined)
  }

  /** Every channel ended. */
  get allEnded(): boolean {
    return this.endedCount === this.channels
  }

  private complete(aborted: number | undefined): AlignmentStep {
    if (this.pending === undefined || this.arrivedCount + this.endedCount < this.channels) {
      return aborted === undefined ? NOTHING : { aborted }
    }
    const snapshot = this.pending
    this.last = snapshot
    this.reset()
    this.promote()
    return aborted === undefined ? { snapshot } : { snapshot, aborted }
  }

  /**
   * At-least-once: the oldest remembered newer barrier becomes the pending one. If it is already
   * complete (its missing channels ended), it is reported on the next call, a little later than
   * its barrier, which at-least-once allows (and a finishing instance snapshots what it missed).
   */
  private promote(): void {
    if (this.later.size === 0) return
    const next = Math.min(...this.later.keys())
    const seen = this.later.get(next)!
    this.later.delete(next)
    this.pending = next
    for (const c of seen) {
      if (this.ended[c] === true || this.arrived[c] === true) continue
      this.arrived[c] = true
      this.arrivedCount++
    }
  }

  private reset(): void {
    this.pending = undefined
    this.arrived.fill(false)
    this.arrivedCount = 0
  }
}
