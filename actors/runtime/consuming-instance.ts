/**
 * What every instance with input channels shares: taking one item per channel in turn (its
 * mailbox), aligning barriers (docs/architecture.md section 6), recording cyclic message channels
 * (section 15), replaying restored messages, and tracking and forwarding the watermark over its
 * inputs (section 17). Subclasses say what `process` does with a batch of records.
 */
import { BarrierAligner, type AlignmentStep, type CheckpointMode } from './alignment.ts'
import type { RecordBatch } from './channel.ts'
import type { OperatorSpec } from '../api/graph.ts'
import type { EdgeOutput } from './output.ts'
import type { MessageRecorder } from './message-recording.ts'
import { WatermarkTracker } from '../time/watermarks.ts'
import { Instance, type InputChannel, type InstanceHost } from './instance.ts'

/** Shared input handling of operators with input channels. */
export abstract class ConsumingInstance extends Instance {
  private readonly aligner: BarrierAligner
  private nextChannel = 0
  /**
   * Input channels that close a message cycle (docs/architecture.md section 15), the last
   * `recorder.channels` of `inputs`: never aligned, recorded between snapshot and barrier.
   */
  protected readonly recorder: MessageRecorder | undefined
  /** Messages restored from the snapshot's `channel` chunks, processed before any input. */
  protected replay: RecordBatch[] | undefined
  /** The input index `process` handles messages as. */
  protected messageInput = -1
  /** The watermark over the input channels (docs/architecture.md section 17). */
  protected readonly watermarks: WatermarkTracker
  /** Some input sent a watermark: the stream has event time, forward ours. */
  private eventTime = false
  /** Every open input is idle (in event time), and downstream was told so. */
  private inputsIdle = false

  constructor(spec: OperatorSpec, index: number, inputs: readonly InputChannel[], outputs: readonly EdgeOutput[], host: InstanceHost, mode: CheckpointMode, recorder?: MessageRecorder) {
    super(spec, index, inputs, outputs, host)
    this.recorder = recorder
    this.aligner = new BarrierAligner(inputs.length - (recorder?.channels ?? 0), mode)
    this.watermarks = new WatermarkTracker(inputs.length)
  }

  protected abstract process(batch: RecordBatch, input: number): void

  /** True while the instance takes its snapshots when a checkpoint is triggered, like a source: it waits for messages only. */
  get snapshotsOnTrigger(): boolean {
    return this.recorder !== undefined && !this.finished && this.aligner.allEnded
  }

  /** False while restored messages wait to be processed. */
  get idle(): boolean {
    return this.replay === undefined
  }

  /** The executor saw the instance's message cycle go quiet: its recorded channels end (section 15). */
  endMessages(): void {
    if (this.recorder === undefined || this.finished) return
    for (let c = 0; c < this.recorder.channels; c++) this.recorder.onEnd(c)
    if (this.aligner.allEnded) this.finish()
  }

  /**
   * The instance's watermark advanced to `time`: fire what it makes due, then forward it
   * downstream (docs/architecture.md section 17). Runs in the executor's slice, between batches.
   */
  protected watermarkAdvanced(time: number): void {
    if (this.eventTime) for (const o of this.outputs) o.broadcast({ type: 'watermark', time })
  }

  step(budget: number): number {
    if (this.finished) return 0
    let work = 0
    if (this.replay !== undefined) work += this.replayMessages()
    const n = this.inputs.length
    const aligned = this.aligner.channels
    // One item per channel in turn, so no input starves another.
    for (let round = 0; work < budget && this.hasCredit(); round++) {
      let took = false
      for (let k = 0; k < n && !this.finished; k++) {
        const c = (this.nextChannel + k) % n
        if (c >= aligned) {
          if (this.takeRecorded(c, c - aligned)) {
            took = true
            work++
          }
          continue
        }
        if (this.aligner.isHeld(c)) continue
        const { channel, input } = this.inputs[c]!
        const item = channel.shift()
        if (item === undefined) continue
        took = true
        work++
        if (item.type === 'records') {
          this.recordsIn += item.records.length
          if (this.eventTime) this.watermarks.onActive(c)
          this.process(item, input)
        }
        else if (item.type === 'watermark') {
          this.eventTime = true
          const advanced = this.watermarks.onWatermark(c, item.time, item.idle === true)
          if (advanced !== undefined) this.watermarkAdvanced(advanced)
          // All inputs idle: this instance is idle downstream too, until an input is active again.
          if (this.watermarks.allIdle !== this.inputsIdle) {
            this.inputsIdle = !this.inputsIdle
            const time = this.watermarks.current
            for (const o of this.outputs) o.broadcast(this.inputsIdle ? { type: 'watermark', time, idle: true } : { type: 'watermark', time })
          }
        }
        else if (item.type === 'barrier') this.aligned(this.aligner.onBarrier(c, item.id), item.id)
        else {
          this.aligned(this.aligner.onEnd(c), undefined)
          const advanced = this.watermarks.onEnd(c)
          // End of input is a final +Infinity watermark: every event-time timer fires first.
          if (advanced !== undefined) this.watermarkAdvanced(advanced)
          if (this.aligner.allEnded && (this.recorder === undefined || this.recorder.allEnded)) {
            for (const o of this.outputs) o.flush()
            this.finish()
          }
        }
      }
      this.nextChannel = (this.nextChannel + 1) % n
      if (!took) break
    }
    for (const o of this.outputs) o.flush()
    return work
  }

  /** One item of recorded channel `r` (input `c`), unless it is set aside for a snapshot not taken yet. */
  private takeRecorded(c: number, r: number): boolean {
    const recorder = this.recorder!
    if (recorder.isHeld(r)) return false
    const { channel, input } = this.inputs[c]!
    const item = channel.shift()
    if (item === undefined) return false
    if (item.type === 'records') {
      recorder.onRecords(r, item)
      this.recordsIn += item.records.length
      this.process(item, input)
    } else if (item.type === 'barrier') recorder.onBarrier(r, item.id)
    else recorder.onEnd(r)
    return true
  }

  private replayMessages(): number {
    const batches = this.replay!
    this.replay = undefined
    for (const b of batches) {
      this.recordsIn += b.records.length
      this.process(b, this.messageInput)
    }
    return batches.length
  }

  private aligned(step: AlignmentStep, barrier: number | undefined): void {
    if (step.aborted !== undefined) this.lifecycle.send({ type: 'ALIGN_ABORTED', checkpointId: step.aborted })
    if (step.snapshot !== undefined) this.snapshot(step.snapshot)
    else if (barrier !== undefined && this.aligner.aligning === barrier) this.lifecycle.send({ type: 'ALIGN', checkpointId: barrier })
  }
}
