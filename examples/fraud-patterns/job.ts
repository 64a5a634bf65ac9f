/**
 * Event patterns with a keyed XState machine (use 1 of docs/architecture.md section 13): per
 * account, three or more failed logins followed by a success within five minutes of the first
 * failure, and a small card payment (under 1) followed by a large one (over 500) within ten
 * minutes. One machine per account, two parallel regions, delays counted in event time, so the
 * alerts are the same on every run, crash or not.
 *
 *   npx weir run examples/fraud-patterns/job.ts --checkpoint-interval 500
 */
import { assign, emit, setup } from 'xstate'
import { boundedOutOfOrderness, job, stdoutSink, type Sink } from 'weir'
import { arraySource } from '../support/array-source.ts'

/** A login attempt or a card payment of an account, at event time `at` (ms). */
export type Activity = { account: string; at: number; kind: 'login'; ok: boolean } | { account: string; at: number; kind: 'payment'; amount: number }

/** An alert the machine emits. */
export interface Alert {
  key: string
  type: 'suspicious-login' | 'small-then-large'
  at: number
}

export const FIVE_MINUTES = 5 * 60_000
export const TEN_MINUTES = 10 * 60_000

export const patterns = setup({
  types: {
    context: {} as { fails: number },
    events: {} as { type: 'fail'; at: number } | { type: 'success'; at: number } | { type: 'payment'; amount: number; at: number },
  },
}).createMachine({
  id: 'patterns',
  type: 'parallel',
  context: { fails: 0 },
  states: {
    logins: {
      initial: 'quiet',
      states: {
        quiet: { on: { fail: { target: 'failing', actions: assign({ fails: 1 }) } } },
        failing: {
          // Five minutes after the first failure the count starts over.
          after: { [FIVE_MINUTES]: { target: 'quiet', actions: assign({ fails: 0 }) } },
          on: {
            fail: { actions: assign({ fails: ({ context }) => context.fails + 1 }) },
            success: [
              { guard: ({ context }) => context.fails >= 3, target: 'quiet', actions: [emit(({ event }) => ({ type: 'suspicious-login', at: event.at })), assign({ fails: 0 })] },
              { target: 'quiet', actions: assign({ fails: 0 }) },
            ],
          },
        },
      },
    },
    payments: {
      initial: 'idle',
      states: {
        idle: { on: { payment: { guard: ({ event }) => event.amount < 1, target: 'smallSeen' } } },
        smallSeen: {
          after: { [TEN_MINUTES]: 'idle' },
          on: { payment: { guard: ({ event }) => event.amount > 500, target: 'idle', actions: emit(({ event }) => ({ type: 'small-then-large', at: event.at })) } },
        },
      },
    },
  },
})

/** A small deterministic random generator (mulberry32), so every run sees the same activity. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** `count` activities of `accounts` accounts over about a day, in event-time order: bursts of failed logins and tiny payments are common enough to match. */
export function activity(count = 20_000, accounts = 40, seed = 7): Activity[] {
  const next = random(seed)
  const out: Activity[] = []
  let at = Date.UTC(2026, 10, 1)
  for (let i = 0; i < count; i++) {
    at += Math.floor(next() * 8_000)
    const account = `acct-${Math.floor(next() * accounts)}`
    const r = next()
    if (r < 0.5) out.push({ account, at, kind: 'login', ok: next() < 0.3 })
    else out.push({ account, at, kind: 'payment', amount: r < 0.7 ? Math.round(next() * 90) / 100 : Math.round(next() * 1_000_00) / 100 })
  }
  return out
}

/** The job, writing its alerts to `sink`. */
export function fraudPatterns(sink: Sink<Alert>, records: readonly Activity[] = activity()) {
  return job('fraud-patterns')
    .source('activity', arraySource(records), { watermarks: boundedOutOfOrderness({ timestamp: (a) => a.at, maxOutOfOrdernessMs: 0 }) })
    .keyBy((a) => a.account)
    .machine<Alert>('patterns', patterns, {
      parallelism: 2,
      delays: 'event-time',
      event: (a) => (a.kind === 'login' ? { type: a.ok ? 'success' : 'fail', at: a.at } : { type: 'payment', amount: a.amount, at: a.at }),
      output: (e, account) => ({ key: account, type: e.type as Alert['type'], at: (e as unknown as { at: number }).at }),
    })
    .sink('alerts', sink)
}

export default fraudPatterns(stdoutSink())
