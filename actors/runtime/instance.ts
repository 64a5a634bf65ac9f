/**
 * The base of every operator instance, the actors of a job: its XState lifecycle, its outputs,
 * and the snapshot step every instance shares (capture state, forward the barrier, report to the
 * host) and end of input. What an instance does with its inputs lives in its subclass:
 * source-instance.ts, consuming-instance.ts (and process-instance.ts, sink-instance.ts,
 * operator-process-instance.ts on top of it). All per-record work is synchronous.
 */
import { createActor, type Actor, type InspectionEvent } from 'xstate'
import type { Channel } from './channel.ts'
import type { ConnectorContext } from '../connectors/types.ts'
import type { HeapKeyedBackend, KeyedSnapshot } from '../state/heap-backend.ts'
import type { OperatorSpec } from '../api/graph.ts'
import { instanceMachine, statusOf, type InstanceStatus } from './lifecycle.ts'
import type { EdgeOutput } from './output.ts'
import type { TimerStore, TimersSnapshot } from '../time/timers.ts'

/** What an instance reports to the runtime that hosts it. */
export interface InstanceHost {
  /** The synchronous part of a snapshot is done; the host encodes and writes the rest. */
  snapshotTaken(instance: Instance, checkpointId: number, keyed: KeyedSnapshot | undefined, operatorState: unknown, timers?: TimersSnapshot): void
  /** Every input ended and the instance sent end-of-input downstream. */
  instanceFinished(instance: Instance): void
  /** A lifecycle transition, for logs and the supervisor. */
  transitioned(instance: Instance, status: InstanceStatus): void
  /** XState's inspector for the instances' lifecycle actors (`RunOptions.inspect`), if any. */
  readonly inspect?: ((event: InspectionEvent) => void) | undefined
}

/** An input channel and which logical input (0 or 1) of the operator it feeds. */
export interface InputChannel {
  channel: Channel
  input: number
}

export abstract class Instance {
  /** `operator[index]`, unique within the job. */
  readonly id: string
  readonly lifecycle: Actor<typeof instanceMachine>
  finished = false
  /** The newest checkpoint this instance snapshotted. */
  lastSnapshot = 0
  /** Records taken from the inputs so far. */
  recordsIn = 0
  protected readonly emitAll: (record: unknown) => void

  constructor(
    readonly spec: OperatorSpec,
    readonly index: number,
    readonly inputs: readonly InputChannel[],
    readonly outputs: readonly EdgeOutput[],
    protected readonly host: InstanceHost,
  ) {
    this.id = `${spec.uid}[${index}]`
    // The actor's id is the instance's, so an inspector tells the instances apart.
    this.lifecycle = createActor(instanceMachine, host.inspect === undefined ? { id: this.id } : { id: this.id, inspect: host.inspect })
    let last: InstanceStatus | undefined
    this.lifecycle.subscribe((s) => {
      const status = statusOf(s.value)
      if (status !== last) host.transitioned(this, (last = status))
    })
    this.lifecycle.start()
    // Side outputs (docs/architecture.md section 17) only get what ctx.output sends them.
    const outs = outputs.filter((o) => o.edge.tag === undefined).map((o) => o.emit)
    this.emitAll = outs.length === 0 ? () => {} : outs.length === 1 ? outs[0]! : (r) => outs.forEach((emit) => emit(r))
  }

  get status(): InstanceStatus {
    return statusOf(this.lifecycle.getSnapshot().value)
  }

  /** Records sent on all outputs so far (buffered records count once their batch is sent). */
  get recordsOut(): number {
    let n = 0
    for (const o of this.outputs) n += o.sent
    return n
  }

  /** True if every output can take more records (backpressure). */
  hasCredit(): boolean {
    for (const o of this.outputs) if (!o.hasCredit()) return false
    return true
  }

  /** Does up to `budget` units of work; returns how many it did (0: nothing to do now). */
  abstract step(budget: number): number

  /** The state to write as this instance's operator state (e.g. a source offset). */
  protected operatorState(): unknown {
    return undefined
  }

  /** The keyed backend, for keyed operators. */
  get backend(): HeapKeyedBackend | undefined {
    return undefined
  }

  /** The timers, for keyed operators that declare `onTimer`. */
  get timers(): TimerStore | undefined {
    return undefined
  }

  /** True if any output carries event times: the instance sets `timestamp` on them before it emits. */
  protected get timed(): boolean {
    return this.outputs.some((o) => o.timed)
  }

  /** Sets the event time of the records emitted next (docs/architecture.md section 17). */
  protected stamp(time: number): void {
    for (const o of this.outputs) o.timestamp = time
  }

  /** Takes checkpoint `id`: capture state, forward the barrier (docs/architecture.md section 6, step 3). */
  snapshot(id: number): void {
    if (id <= this.lastSnapshot) return
    this.lastSnapshot = id
    const live = !this.finished
    if (live) this.lifecycle.send({ type: 'SNAPSHOT', checkpointId: id })
    const keyed = this.backend?.startSnapshot()
    const timers = this.timers?.startSnapshot()
    const op = this.operatorState()
    if (live) for (const o of this.outputs) o.broadcast({ type: 'barrier', id })
    if (live) this.lifecycle.send({ type: 'SNAPSHOT_TAKEN', checkpointId: id })
    if (timers === undefined) this.host.snapshotTaken(this, id, keyed, op)
    else this.host.snapshotTaken(this, id, keyed, op, timers)
  }

  protected finish(): void {
    if (this.finished) return
    for (const o of this.outputs) o.broadcast({ type: 'end' })
    this.finished = true
    this.lifecycle.send({ type: 'FINISH' })
    this.host.instanceFinished(this)
  }

  cancel(): void {
    this.lifecycle.send({ type: 'CANCEL' })
  }

  fail(error: unknown): void {
    this.lifecycle.send({ type: 'FAIL', error })
  }
}

export function connectorContext(job: string, spec: OperatorSpec, index: number): ConnectorContext {
  return { job, operator: spec.uid, instance: index, parallelism: spec.parallelism }
}
