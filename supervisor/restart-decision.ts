/**
 * The decision a restart strategy makes when the job fails: restart after how long, or give up.
 * Pure: the failure's time and the randomness for jitter come in as arguments, so every decision
 * is reproducible; what a strategy remembers between failures is plain data (RestartHistory).
 */
import { MAX_DURATION_MS } from '../persistence/option-checks.ts'
import type { ResolvedRestartStrategy, RestartStrategyType } from './restart-strategy.ts'

/**
 * What a strategy remembers between failures. Immutable: `decideRestart` returns the next one.
 * Plain data (no `undefined`, no class), so it can travel in a persisted machine snapshot.
 */
export interface RestartHistory {
  /** Every failure decided so far, including one that made the strategy give up. */
  readonly failures: number
  /** Restarts granted since the start, or for exponential-backoff since the last reset. */
  readonly attempts: number
  /** When the previous failure happened (ms, caller's clock); `null` before the first. */
  readonly lastFailureAt: number | null
  /** exponential-backoff: the last wait before jitter; `null` when the next is `initialMs`. */
  readonly backoffMs: number | null
  /** failure-rate: times of the failures still inside the window, oldest first. */
  readonly recentFailureTimes: readonly number[]
}

/** The memory of a strategy that has seen no failure yet. */
export function initialRestartHistory(): RestartHistory {
  return { failures: 0, attempts: 0, lastFailureAt: null, backoffMs: null, recentFailureTimes: [] }
}

/** Restart after `delayMs`, or give up for the `reason` given; either way, the next history. */
export type RestartDecision =
  | { readonly restart: true; readonly delayMs: number; readonly history: RestartHistory }
  | { readonly restart: false; readonly reason: string; readonly history: RestartHistory }

/**
 * Decides what to do about a failure that happened at `nowMs`. Call it once per failure, and pass
 * the returned history to the next call.
 *
 * @param random Source of numbers in [0, 1) for jitter, e.g. `Math.random`; inject a fixed one in
 *   tests. Only exponential-backoff with a non-zero `jitter` calls it, once per restart.
 * @example
 * ```ts
 * const strategy = resolveRestartStrategy({ type: 'fixed-delay', attempts: 1 })
 * const first = decideRestart(strategy, initialRestartHistory(), 0, Math.random)
 * // { restart: true, delayMs: 1000, history: ... }
 * const second = decideRestart(strategy, first.history, 5000, Math.random)
 * // { restart: false, reason: 'fixed-delay strategy: 1 restart attempt used', history: ... }
 * ```
 */
export function decideRestart(
  strategy: ResolvedRestartStrategy,
  history: RestartHistory,
  nowMs: number,
  random: () => number,
): RestartDecision {
  const seen: RestartHistory = { ...history, failures: history.failures + 1, lastFailureAt: nowMs }
  switch (strategy.type) {
    case 'none':
      return { restart: false, reason: 'none strategy: restarts are disabled', history: seen }

    case 'fixed-delay':
      if (history.attempts >= strategy.attempts) {
        return { restart: false, reason: attemptsUsed(strategy.type, strategy.attempts), history: seen }
      }
      return {
        restart: true,
        delayMs: strategy.delayMs,
        history: { ...seen, attempts: history.attempts + 1 },
      }

    case 'exponential-backoff': {
      const quiet =
        history.lastFailureAt !== null && nowMs - history.lastFailureAt > strategy.resetAfterMs
      const attempts = quiet ? 0 : history.attempts
      const previous = quiet ? null : history.backoffMs
      if (attempts >= strategy.attempts) {
        return {
          restart: false,
          reason: attemptsUsed(strategy.type, strategy.attempts),
          history: { ...seen, attempts, backoffMs: previous },
        }
      }
      const backoffMs =
        previous === null
          ? strategy.initialMs
          : Math.min(previous * strategy.multiplier, strategy.maxMs)
      return {
        restart: true,
        delayMs: withJitter(backoffMs, strategy.jitter, random),
        history: { ...seen, attempts: attempts + 1, backoffMs },
      }
    }

    case 'failure-rate': {
      const windowStart = nowMs - strategy.intervalMs
      const recentFailureTimes = [
        ...history.recentFailureTimes.filter((at) => at > windowStart),
        nowMs,
      ]
      const next: RestartHistory = { ...seen, recentFailureTimes }
      if (recentFailureTimes.length > strategy.maxFailures) {
        return {
          restart: false,
          reason:
            `failure-rate strategy: ${recentFailureTimes.length} failures within ` +
            `${strategy.intervalMs} ms (max ${strategy.maxFailures})`,
          history: next,
        }
      }
      return {
        restart: true,
        delayMs: strategy.delayMs,
        history: { ...next, attempts: history.attempts + 1 },
      }
    }
  }
}

function withJitter(delayMs: number, jitter: number, random: () => number): number {
  if (jitter === 0) return delayMs
  // random() in [0, 1) maps to a factor in [-1, 1): symmetric, so the mean wait stays delayMs.
  const spread = delayMs * jitter * (2 * random() - 1)
  // Jitter may spread a wait past maxMs; never past what a timer can wait.
  return Math.min(MAX_DURATION_MS, Math.max(0, Math.round(delayMs + spread)))
}

function attemptsUsed(type: RestartStrategyType, attempts: number): string {
  return `${type} strategy: ${attempts} restart ${attempts === 1 ? 'attempt' : 'attempts'} used`
}
