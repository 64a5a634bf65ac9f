/**
 * Totals per account and hour, rolled up into totals per account and day, by event time (use 2
 * of docs/architecture.md section 13).
 *
 * A replayable source produces 100 000 payments over 20 accounts, one every 10 s of event time
 * (about 11.5 days), each up to 2 minutes out of order. The watermark trails the latest payment
 * by 5 minutes, so no payment is late. The first window operator sums each account's payments per
 * hour and emits a total when the watermark passes the hour; the second sums those per day.
 * Both keep their sums as keyed state and fire on timers, so a crash and a restore change
 * nothing in the results (a restarted run may print a result again: stdout is at-least-once).
 *
 *   npx weir run examples/daily-totals/job.ts --checkpoint-interval 500
 */
import { boundedOutOfOrderness, generatorSource, job, stdoutSink, tumblingEventTimeWindows } from 'weir'

const HOUR = 3_600_000
const DAY = 24 * HOUR
/** 2026-11-01T00:00:00Z */
const START = Date.UTC(2026, 10, 1)

/** The event time of payment `seq`: every 10 s, up to 2 minutes early or late. */
export function paymentTime(seq: number, value: number): number {
  return START + seq * 10_000 + ((value * 7_919) % 240_001) - 120_000
}

const sum = { createAccumulator: () => 0, add: (cents: number, p: { cents: number }) => cents + p.cents, getResult: (cents: number) => cents }

export default job('daily-totals', { maxParallelism: 128 })
  .source('in', generatorSource({ records: 100_000, keys: 20, seed: 11, ratePerSecond: 100_000 }), {
    watermarks: boundedOutOfOrderness({ timestamp: (r) => paymentTime(r.seq, r.value), maxOutOfOrdernessMs: 300_000 }),
  })
  .map((r) => ({ account: `acct-${r.key.slice(1)}`, cents: r.value * 100 }))
  .keyBy((p) => p.account)
  .window(tumblingEventTimeWindows(HOUR))
  .aggregate('hourly', sum, { parallelism: 2, result: (account, hour, cents) => ({ account, cents }) })
  .keyBy((h) => h.account)
  .window(tumblingEventTimeWindows(DAY))
  .aggregate('daily', sum, { result: (account, day, cents) => ({ account, day: new Date(day.start).toISOString().slice(0, 10), cents }) })
  .sink('out', stdoutSink())
