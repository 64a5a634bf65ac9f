/**
 * Writes an attempt's snapshots off the hot path (docs/architecture.md section 6, steps 3 and 4):
 * what an instance captured synchronously is encoded a budget at a time in the executor's
 * slices, held until its message recording is complete (section 15), written as chunks (an
 * empty chunk for an empty key group, so a missing one is always noticed), then acknowledged or
 * declined to the coordinator, unless the attempt was fenced meanwhile.
 */
import type { SnapshotStore, StateChunk } from '../../persistence/store.ts'
import { KEYED_CHUNK_FORMAT } from '../../persistence/keyed-chunk.ts'
import type { KeyedSnapshot, KeyGroupBytes } from '../state/heap-backend.ts'
import type { KeyGroupRange } from '../state/key-groups.ts'
import type { Instance } from './instance.ts'
import { OPERATOR_CHUNK_FORMAT } from '../state/operator-state.ts'
import { writesOperatorChunk } from '../api/graph.ts'
import { CHANNEL_CHUNK_FORMAT, type Recording } from './message-recording.ts'
import { TIMERS_CHUNK_FORMAT, type TimersSnapshot } from '../time/timers.ts'
import type { CheckpointAcks, ExecutorMetrics } from './executor-options.ts'

/** One instance's snapshot for one checkpoint, from capture to write. */
export interface Upload {
  instance: Instance
  id: number
  keyed: KeyedSnapshot | undefined
  operatorState: unknown
  /** Messages in flight on recorded channels (section 15), complete once their barriers arrived. */
  recording: Recording | undefined
  timers: TimersSnapshot | undefined
}

/**
 * The data of an empty key group, or of a source without an offset. Written anyway, so the
 * snapshot's manifest lists every key group and instance and a missing chunk is always noticed.
 */
const EMPTY_CHUNK = new Uint8Array(0)
/** How long a canceled executor waits for chunk writes in flight. */
const WRITES_GRACE_MS = 5_000

/** Resolves when every promise settled, or after `ms`, whichever comes first. */
async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([Promise.allSettled(promises), new Promise((r) => (timer = setTimeout(r, ms)))])
  clearTimeout(timer)
}

/** A chunk per key group of `range`: the encoded ones, and an empty one for each group without data. */
function pushGroupChunks(chunks: StateChunk[], operatorUid: string, kind: 'keyed' | 'timers', format: number, range: KeyGroupRange, groups: readonly KeyGroupBytes[]): void {
  const written = new Uint8Array(range.end - range.start + 1)
  for (const g of groups) {
    chunks.push({ operatorUid, kind, index: g.keyGroup, format, data: g.data })
    written[g.keyGroup - range.start] = 1
  }
  for (let i = 0; i < written.length; i++) {
    if (written[i] === 0) chunks.push({ operatorUid, kind, index: range.start + i, format, data: EMPTY_CHUNK })
  }
}

export interface CheckpointWriterOptions {
  store: SnapshotStore | undefined
  job: string
  attempt: number
  acks: CheckpointAcks
  /** Where the longest encode slice is recorded (`maxEncodeSliceMs`). */
  metrics: ExecutorMetrics
}

export class CheckpointWriter {
  private readonly uploads: Upload[] = []
  /** Encoded uploads whose message recording is not complete yet. */
  private readonly recordingUploads: Upload[] = []
  /** Chunk writes still in flight: a canceled executor waits for them, so its run settles after its last write. */
  private readonly writes = new Set<Promise<unknown>>()
  /** The attempt was canceled or failed: no more acks. */
  private fenced = false
  private readonly metrics: ExecutorMetrics

  constructor(private readonly options: CheckpointWriterOptions) {
    this.metrics = options.metrics
  }

  /** True when no snapshot waits to be encoded or for its recording. */
  get idle(): boolean {
    return this.uploads.length === 0 && this.recordingUploads.length === 0
  }

  /** A snapshot an instance took (`InstanceHost.snapshotTaken`), to encode and write. */
  add(upload: Upload): void {
    this.uploads.push(upload)
  }

  /** Encodes pending key groups for up to `budgetMs`; returns true if there is more to do. */
  encode(budgetMs: number): boolean {
    while (this.uploads.length > 0) {
      const up = this.uploads[0]!
      if (up.keyed !== undefined && !up.keyed.complete) {
        const began = performance.now()
        up.instance.backend!.serializeSome(budgetMs)
        const took = performance.now() - began
        if (took > this.metrics.maxEncodeSliceMs) this.metrics.maxEncodeSliceMs = took
        if (!up.keyed.complete) return true
      }
      if (up.timers !== undefined && !up.timers.complete) {
        const began = performance.now()
        up.instance.timers!.encodeSome(budgetMs)
        const took = performance.now() - began
        if (took > this.metrics.maxEncodeSliceMs) this.metrics.maxEncodeSliceMs = took
        if (!up.timers.complete) return true
      }
      this.uploads.shift()
      if (up.recording !== undefined && !up.recording.complete) this.recordingUploads.push(up)
      else this.write(up)
    }
    return false
  }

  /** Writes the uploads whose recording completed since; returns true if it wrote any. */
  writeRecorded(): boolean {
    let work = false
    for (let i = 0; i < this.recordingUploads.length; i++) {
      const up = this.recordingUploads[i]!
      if (!up.recording!.complete) continue
      this.recordingUploads.splice(i--, 1)
      this.write(up)
      work = true
    }
    return work
  }

  /** Declines every snapshot not written yet, so the coordinator need not wait for its timeout. */
  declinePending(error: unknown): void {
    const { acks, attempt } = this.options
    for (const up of [...this.uploads, ...this.recordingUploads]) acks.decline(attempt, up.id, up.instance.id, error)
  }

  /** The attempt was canceled or failed: writes in flight are no longer acknowledged. */
  fence(): void {
    this.fenced = true
  }

  /**
   * Waits for the writes already sent: one is not taken back (its checkpoint stays pending and is
   * aborted by the next run). Bounded, since a store that does not answer must not hang the job.
   */
  async settle(): Promise<void> {
    if (this.writes.size > 0) await settledWithin([...this.writes], WRITES_GRACE_MS)
  }


  private write(up: Upload): void {
    const { store, job, attempt, acks } = this.options
    const uid = up.instance.spec.uid
    const chunks: StateChunk[] = []
    if (up.keyed !== undefined) pushGroupChunks(chunks, uid, 'keyed', KEYED_CHUNK_FORMAT, up.instance.backend!.range, up.keyed.groups)
    if (up.recording !== undefined) {
      chunks.push({ operatorUid: uid, kind: 'channel', index: up.instance.index, format: CHANNEL_CHUNK_FORMAT, data: up.recording.encode() })
    }
    if (up.timers !== undefined) pushGroupChunks(chunks, uid, 'timers', TIMERS_CHUNK_FORMAT, up.instance.timers!.range, up.timers.groups)
    if (writesOperatorChunk(up.instance.spec)) {
      // Encoded by the instance when it took the snapshot (actors/state/operator-state.ts).
      const data = up.operatorState instanceof Uint8Array ? up.operatorState : EMPTY_CHUNK
      chunks.push({ operatorUid: uid, kind: 'operator', index: up.instance.index, format: OPERATOR_CHUNK_FORMAT, data })
    }
    const written = store === undefined || chunks.length === 0 ? Promise.resolve(0) : store.writeChunks(job, up.id, chunks)
    this.writes.add(written)
    written.then(
      (bytes) => {
        this.writes.delete(written)
        if (!this.fenced) acks.ack(attempt, up.id, up.instance.id, bytes)
      },
      (err: unknown) => {
        this.writes.delete(written)
        if (!this.fenced) acks.decline(attempt, up.id, up.instance.id, err)
      },
    )
  }
}
