/**
 * Keyed machines (docs/architecture.md section 19): an XState v5 machine per key, run with
 * XState's pure `initialTransition` / `transition` functions. No actor lives per key: the key's
 * persisted machine snapshot is its keyed state, each record is an event applied to it, and the
 * actions XState returns are carried out by the runtime:
 *
 * * `emit(...)`: the emitted event becomes an output record;
 * * a delayed event (`after`, a delayed `raise`): a durable timer of the key, the event kept in the
 *   key's state so it survives a restore (XState alone would lose it); `cancel` removes it; when
 *   the timer fires the event is applied like a record;
 * * anything else with an effect (a custom action implementation, `sendTo`, `spawnChild`, an
 *   `invoke`) would run again on every replay, so it is refused: `invoke` when the job is
 *   defined, the others when they first happen, with an error naming the state and the action.
 *
 * The machine is built on the keyed `process` path, so checkpoints, restores and rescaling need
 * nothing of their own.
 */
import { initialTransition, transition, type AnyStateMachine, type EventObject } from 'xstate'
import { asyncResultError, describeValue, JobDefinitionError, MachineActionError, MachineStateVersionError, rejectAsync } from '../errors.ts'
import type { OperatorOptions, ProcessOptions } from '../api/options.ts'
import type { ProcessContext, ProcessFunction, TimerContext } from '../api/contexts.ts'
import type { Key } from '../state/key-groups.ts'
import { valueState } from '../api/state.ts'

/** When a machine's delays (`after`) run out. */
export type MachineDelays = 'processing-time' | 'event-time'

/** Options of {@link KeyedStream.machine}. */
export interface MachineOptions<T, K extends Key, OUT> extends OperatorOptions {
  /**
   * Turns a record into the event the machine gets.
   * @default the record itself, which must be an object with a string `type`
   */
  event?: (record: T) => EventObject
  /**
   * The version of the machine's stored snapshots. Raise it when a new machine cannot read the
   * snapshots of the old one, and give `migrate`.
   * @default 1
   */
  version?: number
  /** Turns a snapshot stored by version `fromVersion` (older than `version`) into one of this version. */
  migrate?: (persistedSnapshot: unknown, fromVersion: number) => unknown
  /**
   * What the machine's delays count: processing time (the wall clock, `RunOptions.clock`), or
   * event time from the timestamp of the record that started the delay, fired by watermarks,
   * which gives the same results on every replay.
   * @default 'processing-time'
   */
  delays?: MachineDelays
  /** The machine's `input` for a key's first event. @default undefined */
  input?: (key: K) => unknown
  /**
   * The record emitted for each event the machine emits with `emit(...)`.
   * @default (emitted, key) => ({ key, ...emitted })
   */
  output?: (emitted: EventObject, key: K) => OUT
}

/** What a key's state holds: the machine's version, its persisted snapshot, its pending delayed events. */
interface StoredMachine {
  v: number
  s: unknown
  /** Delayed events not yet delivered: [id, event, time], in the order they were scheduled. */
  d: [string, EventObject, number][]
}

const OPTION_KEYS = ['parallelism', 'event', 'version', 'migrate', 'delays', 'input', 'output']

/** A keyed machine's `sendTo` or `sendParent`: what it does, and what to do instead. */
function sendProblem(target: string): string {
  return (
    `sends an event to ${target === '#_parent' ? 'a parent' : `actor '${target}'`}, but a keyed machine runs alone (no parent, no other actors, so nothing it sent would be exactly once); ` +
    "emit() the event instead: it becomes the operator's output, and a process downstream can pass it on to another operator with ctx.send(operator, key, message)"
  )
}

/** An action as a state node holds it: a built-in action (a function with a `type`), the name of one of `setup`'s actions, or `{ type, params }`. */
type ActionRef = string | { type?: unknown; to?: unknown }
interface StateNodeShape {
  id: string
  invoke?: readonly unknown[]
  states?: Record<string, unknown>
  entry?: readonly ActionRef[]
  exit?: readonly ActionRef[]
  transitions?: Map<string, readonly { actions?: readonly ActionRef[] }[]>
  always?: readonly { actions?: readonly ActionRef[] }[]
  after?: readonly { actions?: readonly ActionRef[] }[]
}

/**
 * Throws if some state of the machine invokes a promise, callback or actor (effects that would
 * run again on replay), or sends with `sendTo` / `sendParent` (there is no actor to send to).
 * Sends made dynamically (`enqueueActions`) are caught when they run, by `refuseSends`.
 */
function rejectEffects(machine: AnyStateMachine, job: string, operator: string): void {
  const named = (machine.implementations?.actions ?? {}) as Record<string, ActionRef | undefined>
  const checkActions = (node: StateNodeShape, actions: readonly ActionRef[] | undefined): void => {
    for (const ref of actions ?? []) {
      const name = typeof ref === 'string' ? ref : typeof ref?.type === 'string' && !ref.type.startsWith('xstate.') ? ref.type : undefined
      const action = name === undefined ? ref : named[name]
      if (typeof action === 'object' || typeof action === 'function') {
        if (action?.type === 'xstate.sendTo') {
          const to = typeof action.to === 'string' ? action.to : 'chosen by a function'
          throw new JobDefinitionError(`state ${node.id} of the machine has an action ${to === '#_parent' ? 'sendParent' : 'sendTo'}${name === undefined ? '' : ` (${name})`} that ${sendProblem(to)}`, job, operator)
        }
      }
    }
  }
  const walk = (node: StateNodeShape): void => {
    if ((node.invoke?.length ?? 0) > 0) {
      throw new JobDefinitionError(`state ${node.id} of the machine invokes an actor; a keyed machine runs pure transitions only (an invoked promise or callback would run again on every replay), so move the work to a source or sink and send its result as a record`, job, operator)
    }
    checkActions(node, node.entry)
    checkActions(node, node.exit)
    for (const ts of node.transitions?.values() ?? []) for (const tr of ts) checkActions(node, tr.actions)
    for (const tr of [...(node.always ?? []), ...(node.after ?? [])]) checkActions(node, tr.actions)
    for (const child of Object.values(node.states ?? {})) walk(child as StateNodeShape)
  }
  walk(machine.root as unknown as StateNodeShape)
}

function checkFunction(value: unknown, what: string, job: string, operator: string): void {
  if (value === undefined) return
  if (typeof value !== 'function') throw new JobDefinitionError(`${what} must be a function`, job, operator)
  rejectAsync(value, what, job, operator)
}

/**
 * The keyed process a machine operator is (`keyed.machine(...)`): its options (the machine
 * state, `onTimer` for delays) and its function. The stream adds it as any keyed `process`.
 */
export function machineProcess<T, K extends Key, OUT>(job: string, name: string, machine: AnyStateMachine, options: MachineOptions<T, K, OUT> = {}): { options: ProcessOptions<K, OUT, T>; fn: ProcessFunction<T, K, OUT> } {
  const m = machine as Partial<AnyStateMachine> | undefined
  if (typeof m !== 'object' || m === null || typeof m.getPersistedSnapshot !== 'function' || typeof m.resolveState !== 'function') {
    throw new JobDefinitionError('machine needs an XState v5 machine (createMachine(...) or setup(...).createMachine(...))', job, name)
  }
  if (typeof options !== 'object' || options === null) throw new JobDefinitionError('machine options must be an object', job, name)
  for (const k of Object.keys(options)) if (!OPTION_KEYS.includes(k)) throw new JobDefinitionError(`unknown machine option ${k} (known: ${OPTION_KEYS.join(', ')})`, job, name)
  const version = options.version ?? 1
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) throw new JobDefinitionError(`version must be an integer >= 1, got ${String(version)}`, job, name)
  const delays = options.delays ?? 'processing-time'
  if (delays !== 'processing-time' && delays !== 'event-time') throw new JobDefinitionError(`delays must be 'processing-time' or 'event-time', got ${String(delays)}`, job, name)
  checkFunction(options.event, 'the event function', job, name)
  checkFunction(options.migrate, 'migrate', job, name)
  checkFunction(options.input, 'the input function', job, name)
  checkFunction(options.output, 'the output function', job, name)
  rejectEffects(machine, job, name)

  const toEvent = options.event ?? ((r: T) => r as unknown as EventObject)
  const toOutput = options.output ?? ((e: EventObject, key: K) => ({ key, ...e }) as unknown as OUT)
  const stored = valueState<StoredMachine>('machine')
  /**
   * The resolved snapshot of each stored value this operator wrote, so the next event of the key
   * skips `resolveState`. Weak: a value replaced or dropped takes its entry with it; values
   * restored from a snapshot are new objects and are resolved once.
   */
  const resolved = new WeakMap<StoredMachine, ReturnType<AnyStateMachine['resolveState']>>()
  type Ctx = ProcessContext<K, OUT>

  /** The key's machine snapshot, migrated to `version` if it is older. */
  const load = (ctx: Ctx): { snapshot: ReturnType<AnyStateMachine['resolveState']>; delayed: StoredMachine['d'] } => {
    const s = ctx.state(stored).value()
    if (s === undefined) {
      const input = options.input?.(ctx.key)
      const [snapshot, actions] = refuseSends(() => initialTransition(machine, input), ctx.key, (machine.config as { initial?: unknown }).initial)
      const delayed: StoredMachine['d'] = []
      perform(ctx, snapshot, actions as Action[], delayed, ctx.timestamp)
      return { snapshot, delayed }
    }
    let persisted = s.s
    if (s.v > version) throw new MachineStateVersionError(name, ctx.key, s.v, version, 'is newer than the machine (a snapshot of a later version of the job); run that version, or restore an older snapshot')
    if (s.v < version) {
      if (options.migrate === undefined) throw new MachineStateVersionError(name, ctx.key, s.v, version, 'is older than the machine; give the machine a migrate(snapshot, fromVersion) option')
      persisted = options.migrate(structuredClone(persisted), s.v)
    }
    // The snapshot this instance wrote last for the key is still at hand: no need to resolve it again.
    const live = s.v === version ? resolved.get(s) : undefined
    return { snapshot: live ?? machine.resolveState(persisted as never), delayed: [...s.d] }
  }

  /** Carries out what XState returned: emits, delayed events, cancels; refuses effects. */
  const perform = (ctx: Ctx, snapshot: { value: unknown }, actions: readonly Action[], delayed: StoredMachine['d'], base: number | undefined): void => {
    for (const a of actions) {
      switch (a.type) {
        case 'xstate.emit':
          ctx.emit(toOutput(a.params.event, ctx.key))
          break
        case 'xstate.raise': {
          // A raise without delay was already handled inside the transition.
          const delay = a.params.delay
          if (typeof delay !== 'number') break
          const from = delays === 'event-time' ? base : ctx.timers.currentProcessingTime()
          if (from === undefined) {
            throw new MachineActionError(name, ctx.key, snapshot.value, a.type, "has a delay counted in event time (delays: 'event-time'), but the record has no timestamp; give the source a watermarks strategy")
          }
          const time = from + delay
          let id = a.params.id
          if (id === undefined) {
            // A raise without an id cannot be canceled: any id unused by the key's pending events will do.
            let k = 0
            while (delayed.some((d) => d[0] === `anonymous:${time}:${k}`)) k++
            id = `anonymous:${time}:${k}`
          }
          // Scheduling an id again replaces the pending event (XState does the same).
          const i = delayed.findIndex((d) => d[0] === id)
          if (i >= 0) cancel(ctx, delayed, i)
          delayed.push([id, a.params.event, time])
          if (delays === 'event-time') ctx.timers.registerEventTimeTimer(time)
          else ctx.timers.registerProcessingTimeTimer(time)
          break
        }
        case 'xstate.cancel': {
          const i = delayed.findIndex((d) => d[0] === a.params.sendId)
          if (i >= 0) cancel(ctx, delayed, i)
          break
        }
        case 'xstate.log':
          break
        default:
          throw new MachineActionError(name, ctx.key, snapshot.value, a.type, 'has an effect that would run again on every replay; a keyed machine carries out emit(), assign(), raise() and delays only, so emit an event and act on it downstream')
      }
    }
  }

  /**
   * Runs a transition, turning XState's throw for a `sendTo` or `sendParent` (one made
   * dynamically: those in the definition are refused before the job runs) into a terminal
   * error that says what to do instead. A key's machine runs without an actor system (no parent,
   * no other actors), so XState throws a plain error while it resolves the action, which would
   * look like a failure of user code that a restart might get past; it never can.
   */
  const refuseSends = <R>(run: () => R, key: K, stateValue: unknown): R => {
    try {
      return run()
    } catch (err) {
      const target = err instanceof Error ? SEND_FAILED.exec(err.message)?.[1] : undefined
      if (target === undefined) throw err
      throw new MachineActionError(name, key, stateValue, target === '#_parent' ? 'sendParent' : 'sendTo', sendProblem(target), err)
    }
  }

  const cancel = (ctx: Ctx, delayed: StoredMachine['d'], i: number): void => {
    const [, , time] = delayed[i]!
    delayed.splice(i, 1)
    // Another pending event of the key may share the timer.
    if (delayed.some((d) => d[2] === time)) return
    if (delays === 'event-time') ctx.timers.deleteEventTimeTimer(time)
    else ctx.timers.deleteProcessingTimeTimer(time)
  }

  type Loaded = ReturnType<typeof load>

  /** Applies one event to the key's machine and carries out its actions. */
  const step = (ctx: Ctx, loaded: Loaded, event: EventObject, base: number | undefined): void => {
    const [next, actions] = refuseSends(() => transition(machine, loaded.snapshot, event), ctx.key, loaded.snapshot.value)
    perform(ctx, next, actions as Action[], loaded.delayed, base)
    loaded.snapshot = next
  }

  /**
   * Delivers the key's pending delayed events due before `until` (or at it, if `inclusive`), in
   * time order, each as of its own time. Before a record of event time `t`, the events due
   * before `t` go first, however far the watermark has come: a key's machine sees its records
   * and its delays in event-time order, the same on every run.
   */
  const deliverDue = (ctx: Ctx, loaded: Loaded, until: number, inclusive: boolean): void => {
    const delayed = loaded.delayed
    while (loaded.snapshot.status === 'active') {
      let best = -1
      for (let i = 0; i < delayed.length; i++) {
        const time = delayed[i]![2]
        if ((inclusive ? time <= until : time < until) && (best < 0 || time < delayed[best]![2])) best = i
      }
      if (best < 0) return
      const [, event, time] = delayed[best]!
      cancel(ctx, delayed, best)
      step(ctx, loaded, event, time)
    }
  }

  /** Stores the key's machine, or drops it (with its timers) once it reached its final state. */
  const save = (ctx: Ctx, loaded: Loaded): void => {
    const state = ctx.state(stored)
    if (loaded.snapshot.status !== 'active') {
      for (let i = loaded.delayed.length - 1; i >= 0; i--) cancel(ctx, loaded.delayed, i)
      state.clear()
      return
    }
    const value: StoredMachine = { v: version, s: machine.getPersistedSnapshot(loaded.snapshot), d: loaded.delayed }
    state.update(value)
    resolved.set(value, loaded.snapshot)
  }

  return {
    options: {
      state: { stored },
      ...(options.parallelism === undefined ? {} : { parallelism: options.parallelism }),
      onTimer: (time: number, ctx: TimerContext<K, OUT>) => {
        const loaded = load(ctx)
        deliverDue(ctx, loaded, time, true)
        save(ctx, loaded)
      },
    },
    fn: (record: T, ctx: Ctx) => {
      const event = toEvent(record)
      if (event !== undefined && typeof (event as { then?: unknown }).then === 'function') throw asyncResultError(event, name, ctx.instance, ctx.key)!
      if (typeof event !== 'object' || event === null || typeof event.type !== 'string') {
        throw new TypeError(`machine ${name}: an event must be an object with a string type, got ${describeValue(event)}; give the machine an event(record) option`)
      }
      const loaded = load(ctx)
      const at = ctx.timestamp
      if (delays === 'event-time' && at !== undefined) deliverDue(ctx, loaded, at, false)
      if (loaded.snapshot.status === 'active') step(ctx, loaded, event, at)
      save(ctx, loaded)
    },
  }
}

/** XState's message when an action sends to an actor it cannot find (every `sendTo` and `sendParent` of a keyed machine); group 1 is the target. */
const SEND_FAILED = /^Unable to send event to actor '([^']*)' from machine/

/** The executable actions `transition` returns, as far as the runtime reads them. */
interface Action {
  type: string
  params: { event: EventObject; id?: string; delay?: number; sendId?: string }
}
