/**
 * The `ctx` a keyed operator's functions are given (`ProcessContext`, and `TimerContext` while
 * `onTimer` runs): one object per instance, its key and timestamp set before each call, so the
 * record path allocates nothing per record.
 */
import { JobDefinitionError } from '../errors.ts'
import type { HeapKeyedBackend } from '../state/heap-backend.ts'
import type { ProcessContext, TimerService } from '../api/contexts.ts'
import type { Key } from '../state/key-groups.ts'
import { undeclaredTarget, type MessageSender } from './message-channels.ts'
import type { StateDescriptor } from '../api/state.ts'
import type { BroadcastStates } from '../state/broadcast-state.ts'
import type { OutputTag } from '../api/side-outputs.ts'
import type { TimeDomain } from '../time/timers.ts'

/** A keyed instance's context: see the file comment. */
export class ProcessInstanceContext implements ProcessContext<Key, unknown> {
  key: Key = ''
  /** Set on a keyed operator connected to a broadcast stream (actors/state/broadcast-state.ts). */
  broadcast: BroadcastStates | undefined
  timestamp: number | undefined = undefined
  /** Set while `onTimer` runs (then this is the TimerContext). */
  timeDomain: TimeDomain | undefined = undefined
  timers: TimerService = undefined as unknown as TimerService
  private lastDescriptor: StateDescriptor | undefined
  private lastHandle: unknown

  constructor(
    readonly instance: number,
    private readonly operator: string,
    private readonly backend: HeapKeyedBackend,
    readonly emit: (record: unknown) => void,
    private readonly messages: MessageSender | undefined,
    /** Emit functions of the side outputs, by tag id. */
    private readonly sideOutputs: ReadonlyMap<string, (record: unknown) => void>,
  ) {}

  send(operator: string, key: Key, message: unknown): void {
    if (this.messages === undefined) throw undeclaredTarget(this.operator, operator, [])
    this.messages.send(operator, key, message)
  }

  output<T>(tag: OutputTag<T>, record: T): void {
    if (typeof tag !== 'object' || tag === null || typeof tag.id !== 'string') throw new TypeError('ctx.output needs a tag from outputTag(id)')
    // A tag no stream reads is emitted nowhere (Flink).
    this.sideOutputs.get(tag.id)?.(record)
  }

  state<D extends StateDescriptor>(descriptor: D): never {
    if (descriptor !== this.lastDescriptor) {
      const handle = this.backend.handle(descriptor)
      if (handle === undefined) {
        const name = (descriptor as { name?: unknown })?.name
        throw new JobDefinitionError(`ctx.state(${String(name)}): declare the state in process('${this.operator}', { state: { ... } })`, undefined, this.operator)
      }
      this.lastDescriptor = descriptor
      this.lastHandle = handle
    }
    return this.lastHandle as never
  }

  /** Read-only broadcast state, for `processElement` (docs/architecture.md section 16). */
  broadcastState(descriptor: unknown): unknown {
    if (this.broadcast === undefined) throw new JobDefinitionError('ctx.broadcastState: this operator is not connected to a broadcast stream (keyed.connect(stream.broadcast(state)))', undefined, this.operator)
    return this.broadcast.readOnly(descriptor)
  }
}
