/**
 * Payment totals per account: a keyed aggregation with exactly-once state.
 *
 * A replayable source produces 200 000 payments over 50 accounts (at 100 000 per second, so a
 * run takes about two seconds and you can see checkpoints and kill it half-way). Every payment
 * is keyed by account; the `totals` operator keeps, per account, the running total (value
 * state), the number of payments (reducing state) and the largest payment (aggregating state),
 * and reports each account every 1 000 payments.
 *
 *   npm run example                       # run it (embedded store in .weir/)
 *   npx weir state payments totals total  # read the totals from the last checkpoint
 */
import { aggregatingState, generatorSource, job, reducingState, stdoutSink, valueState } from 'weir'

interface Payment {
  account: string
  cents: number
}

const total = valueState<number>('total', { default: 0 })
const payments = reducingState<number>('payments', (a, b) => a + b)
const largest = aggregatingState('largest', {
  createAccumulator: () => 0,
  add: (max: number, cents: number) => Math.max(max, cents),
  getResult: (max) => max,
})

export default job('payments', { maxParallelism: 128 })
  .source('in', generatorSource({ records: 200_000, keys: 50, seed: 7, ratePerSecond: 100_000 }))
  .map((r): Payment => ({ account: `acct-${r.key.slice(1)}`, cents: r.value * 100 }))
  .keyBy((p) => p.account)
  .process('totals', { state: { total, payments, largest }, parallelism: 2 }, (p: Payment, ctx) => {
    const t = ctx.state(total)
    t.update(t.value() + p.cents)
    const n = ctx.state(payments)
    n.add(1)
    ctx.state(largest).add(p.cents)
    if (n.get()! % 1000 === 0) {
      ctx.emit({ account: ctx.key, payments: n.get(), total: (t.value() / 100).toFixed(2), largest: ctx.state(largest).get()! / 100 })
    }
  })
  .sink('out', stdoutSink())
