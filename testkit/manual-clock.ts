/**
 * A processing-time clock that moves only when a test says so: pass it as `RunOptions.clock`
 * (or to `testJob`) and processing-time timers, state TTL and source idleness follow it.
 */
import type { Clock } from '../actors/time/clock.ts'

/**
 * A hand-moved {@link Clock}.
 * @example
 * const clock = new ManualClock(0)
 * const run = startJob(myJob, { clock })
 * clock.advance(60_000) // a minute passes: timers due by then fire, TTL counts it
 */
export class ManualClock implements Clock {
  private time: number

  constructor(startMs = 0) {
    this.time = ManualClock.check(startMs, 'startMs')
  }

  now(): number {
    return this.time
  }

  /** Moves the clock to `ms`. Time does not go backwards: an earlier `ms` throws a RangeError. */
  set(ms: number): void {
    ManualClock.check(ms, 'ms')
    if (ms < this.time) throw new RangeError(`ManualClock cannot go back from ${this.time} to ${ms}: processing time only moves forward`)
    this.time = ms
  }

  /** Moves the clock `ms` forward (`ms >= 0`). */
  advance(ms: number): void {
    ManualClock.check(ms, 'ms')
    if (ms < 0) throw new RangeError(`ManualClock.advance needs ms >= 0, got ${ms}`)
    this.time += ms
  }

  private static check(ms: unknown, what: string): number {
    if (typeof ms !== 'number' || !Number.isFinite(ms)) throw new RangeError(`ManualClock: ${what} must be a finite number of milliseconds, got ${String(ms)}`)
    return ms
  }
}
