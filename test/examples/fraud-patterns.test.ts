/**
 * The event-patterns example (examples/fraud-patterns): its alerts are exactly those a direct
 * reading of the two rules gives, account by account, also when the job fails part-way and
 * restarts from its last checkpoint.
 */
import t from 'tap'
import { arraySink } from 'weir'
import { testJob } from 'weir/testing'
import { activity, fraudPatterns, FIVE_MINUTES, TEN_MINUTES, type Activity, type Alert } from '../../examples/fraud-patterns/job.ts'

/** The rules, read directly: per account in time order; a timeout applies before an event later than it. */
function expectedAlerts(records: readonly Activity[]): Alert[] {
  const out: Alert[] = []
  const accounts = new Map<string, { fails: number; failingSince: number | undefined; smallAt: number | undefined }>()
  for (const a of records) {
    let s = accounts.get(a.account)
    if (s === undefined) accounts.set(a.account, (s = { fails: 0, failingSince: undefined, smallAt: undefined }))
    if (s.failingSince !== undefined && s.failingSince + FIVE_MINUTES < a.at) {
      s.failingSince = undefined
      s.fails = 0
    }
    if (s.smallAt !== undefined && s.smallAt + TEN_MINUTES < a.at) s.smallAt = undefined
    if (a.kind === 'login') {
      if (!a.ok) {
        if (s.failingSince === undefined) s.failingSince = a.at
        s.fails++
      } else if (s.failingSince !== undefined) {
        if (s.fails >= 3) out.push({ key: a.account, type: 'suspicious-login', at: a.at })
        s.failingSince = undefined
        s.fails = 0
      }
    } else if (s.smallAt === undefined) {
      if (a.amount < 1) s.smallAt = a.at
    } else if (a.amount > 500) {
      out.push({ key: a.account, type: 'small-then-large', at: a.at })
      s.smallAt = undefined
    }
  }
  return out
}

const order = (xs: Alert[]) => [...xs].sort((x, y) => x.at - y.at || x.key.localeCompare(y.key) || x.type.localeCompare(y.type))

t.test('fraud-patterns - every alert the two rules give, and no other', async (t) => {
  const records = activity()
  const expected = expectedAlerts(records)
  t.ok(expected.filter((a) => a.type === 'suspicious-login').length >= 5, 'the data holds login patterns')
  t.ok(expected.filter((a) => a.type === 'small-then-large').length >= 5, 'the data holds payment patterns')
  const out: Alert[] = []
  const run = await testJob(fraudPatterns(arraySink(out), records))
  t.equal(run.result.status, 'finished')
  t.same(order(out), order(expected))
})

t.test('fraud-patterns - a failure part-way: the restarted job ends with the same alerts (a sink may repeat some)', async (t) => {
  const records = activity(6_000, 20, 3)
  const expected = expectedAlerts(records)
  const out: Alert[] = []
  // The source fails once, after its 4 000th record: the job restarts from its last checkpoint.
  let failed = false
  const failing = records.map((r, i) => (i === 4_000 ? { ...r, boom: true } : r))
  const job = fraudPatterns(arraySink(out), failing)
  const graph = job.graph()
  const spec = graph.operators.find((o) => o.uid === 'patterns')! as unknown as { fns: ((r: unknown, ctx: unknown) => void)[] }
  const original = spec.fns[0]!
  spec.fns = [
    (r, ctx) => {
      if ((r as { boom?: boolean }).boom === true && !failed) {
        failed = true
        throw new Error('injected failure')
      }
      original(r, ctx)
    },
  ]
  const run = await testJob(graph, { checkpoints: { intervalMs: 5 }, run: { restart: { type: 'fixed-delay', attempts: 2, delayMs: 10 } } })
  t.ok(failed, 'the failure happened')
  t.equal(run.result.attempts, 2, 'the job ran twice')
  // Alerts written between the last checkpoint and the failure are written again (the array sink is at-least-once).
  const unique = new Map(out.map((a) => [`${a.key} ${a.type} ${a.at}`, a]))
  t.same(order([...unique.values()]), order(expected))
})
