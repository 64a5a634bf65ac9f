/**
 * The restart strategy as an XState machine (docs/architecture.md section 4): the pure decision of
 * `restart-strategy.ts` plus the wait, as a delayed transition, so the clock can be injected and
 * the dashboard sees the wait as a state.
 *
 * - `idle`: the job runs; nothing to do until it fails.
 * - `waiting`: a restart was granted; the wait (`lastDelayMs`) runs.
 * - `restarting`: the wait is over; the owner restarts the job and sends `RESTARTED`.
 * - `exhausted` (final): the strategy gave up; `reason` and `lastError` say why.
 *
 * A `FAILED` in `waiting` or `restarting` is one more failure: it is decided again, and a granted
 * restart starts a fresh wait.
 */

import { assign, createActor, setup } from 'xstate'
import type { Actor, ActorOptions, AnyActorLogic } from 'xstate'
import { decideRestart, initialRestartHistory, type RestartHistory } from './restart-decision.ts'
import type { ResolvedRestartStrategy } from './restart-strategy.ts'

export interface RestartMachineInput {
  readonly strategy: ResolvedRestartStrategy
  /** Numbers in [0, 1) for jitter. @default Math.random */
  readonly random?: () => number
  /** Memory to start from, e.g. carried over from an earlier actor. @default initialRestartHistory() */
  readonly history?: RestartHistory
}

export interface RestartMachineContext {
  readonly strategy: ResolvedRestartStrategy
  readonly history: RestartHistory
  // Kept in context because that is where an XState v5 machine receives its input; it makes the
  // persisted snapshot not purely data, which is acceptable as restart memory is not persisted.
  readonly random: () => number
  /** The wait decided for the latest granted restart; `null` before the first. */
  readonly lastDelayMs: number | null
  /** Times the wait ran out and the owner was told to restart. */
  readonly restarts: number
  /** The error of the latest failure; `undefined` before the first. */
  readonly lastError: unknown
  /** Why the strategy gave up; `null` until it does. */
  readonly reason: string | null
}

export type RestartMachineEvent =
  /** The job failed at `at` (ms, on the same clock as the actor's). */
  | { readonly type: 'FAILED'; readonly error: unknown; readonly at: number }
  /** The owner finished restarting the job, which runs again. */
  | { readonly type: 'RESTARTED' }

/** What the machine ends with once the strategy has given up. */
export interface RestartMachineOutput {
  readonly reason: string
  readonly lastError: unknown
}

/**
 * Decides about each failure of a job and waits before each restart.
 *
 * @example
 * ```ts
 * const actor = createActor(restartMachine, { input: { strategy: resolveRestartStrategy(undefined) } })
 * actor.subscribe((snapshot) => {
 *   if (snapshot.matches('restarting')) void restartJob().then(() => actor.send({ type: 'RESTARTED' }))
 * })
 * actor.start()
 * actor.send({ type: 'FAILED', error, at: Date.now() })
 * ```
 */
export const restartMachine = setup({
  types: {
    context: {} as RestartMachineContext,
    events: {} as RestartMachineEvent,
    input: {} as RestartMachineInput,
    output: {} as RestartMachineOutput,
  },
  actions: {
    decide: assign(({ context }, failure: { readonly error: unknown; readonly at: number }) => {
      const decision = decideRestart(context.strategy, context.history, failure.at, context.random)
      return decision.restart
        ? { history: decision.history, lastError: failure.error, lastDelayMs: decision.delayMs }
        : { history: decision.history, lastError: failure.error, reason: decision.reason }
    }),
    countRestart: assign({ restarts: ({ context }) => context.restarts + 1 }),
  },
  guards: {
    gaveUp: ({ context }) => context.reason !== null,
  },
  delays: {
    restartDelay: ({ context }) => context.lastDelayMs ?? 0,
  },
}).createMachine({
  id: 'restart',
  context: ({ input }) => ({
    strategy: input.strategy,
    history: input.history ?? initialRestartHistory(),
    random: input.random ?? Math.random,
    lastDelayMs: null,
    restarts: 0,
    lastError: undefined,
    reason: null,
  }),
  initial: 'idle',
  // Wherever the job is, a failure goes through the same decision.
  on: {
    FAILED: {
      target: '.deciding',
      actions: {
        type: 'decide',
        params: ({ event }) => ({ error: event.error, at: event.at }),
      },
    },
  },
  states: {
    idle: {},
    // Transient: resolved within the same step, so no snapshot ever shows it.
    deciding: {
      always: [{ guard: 'gaveUp', target: 'exhausted' }, { target: 'waiting' }],
    },
    waiting: {
      after: { restartDelay: 'restarting' },
    },
    restarting: {
      entry: 'countRestart',
      on: { RESTARTED: 'idle' },
    },
    exhausted: { type: 'final' },
  },
  output: ({ context }) => ({ reason: context.reason ?? 'gave up', lastError: context.lastError }),
})

/** Options of {@link createRestartActor}. */
export interface RestartActorOptions {
  /** Numbers in [0, 1) for jitter. @default Math.random */
  readonly random?: () => number
  /** Timers for the wait; XState's `SimulatedClock` in tests. @default the real timers */
  readonly clock?: Clock
}

export type RestartActor = Actor<typeof restartMachine>

// xstate does not export its `Clock` type from the package root; this is the same type.
type Clock = NonNullable<ActorOptions<AnyActorLogic>['clock']>

/**
 * Creates (does not start) an actor of {@link restartMachine} for a resolved strategy.
 *
 * @example
 * ```ts
 * const clock = new SimulatedClock()
 * const actor = createRestartActor(resolveRestartStrategy({ type: 'fixed-delay' }), { clock }).start()
 * actor.send({ type: 'FAILED', error: new Error('boom'), at: clock.now() })
 * clock.increment(1000) // actor.getSnapshot().value === 'restarting'
 * ```
 */
export function createRestartActor(
  strategy: ResolvedRestartStrategy,
  options: RestartActorOptions = {},
): RestartActor {
  const input: RestartMachineInput =
    options.random === undefined ? { strategy } : { strategy, random: options.random }
  return createActor(
    restartMachine,
    options.clock === undefined ? { input } : { input, clock: options.clock },
  )
}
