/**
 * Processing time, behind a small interface so tests and the test kit can drive it: timers,
 * state TTL and anything else that asks "what time is it now" read it from a `Clock`.
 */

/** A source of processing time in milliseconds since the epoch. */
export interface Clock {
  now(): number
}

/** The wall clock (`Date.now`). */
export const systemClock: Clock = Object.freeze({ now: () => Date.now() })
