/**
 * The historic-data example (examples/history): every answer equals the purchases of the user in
 * the asked window, computed directly from the input; state TTL, driven by a hand-moved clock,
 * forgets users that went quiet.
 */
import t from 'tap'
import { arraySink } from 'weir'
import { ManualClock, testJob } from 'weir/testing'
import { activity, DAY, history, KEEP_DAYS, recent, type Activity, type Answer } from '../../examples/history/job.ts'

function expectedAnswers(records: readonly Activity[]): Answer[] {
  const out: Answer[] = []
  for (let i = 0; i < records.length; i++) {
    const q = records[i]!
    if (q.kind !== 'query') continue
    let purchases = 0
    let cents = 0
    for (let j = 0; j < i; j++) {
      const p = records[j]!
      if (p.kind === 'purchase' && p.user === q.user && p.at > q.at - q.days * DAY) {
        purchases++
        cents += p.cents
      }
    }
    out.push({ user: q.user, at: q.at, days: q.days, purchases, cents })
  }
  return out
}

const order = (xs: Answer[]) => [...xs].sort((a, b) => a.at - b.at || a.user.localeCompare(b.user))

t.test('history - each query is answered from exactly the purchases of its window', async (t) => {
  const records = activity(6_000, 30)
  const out: Answer[] = []
  const run = await testJob(history(arraySink(out), records), { clock: new ManualClock(0) })
  t.equal(run.result.status, 'finished')
  t.same(order(out), order(expectedAnswers(records)))
  // What is left per user: its purchases of the 30 days before its last record.
  const state = run.state<[number, number][]>('history', recent)
  for (const [user, list] of state) {
    const last = Math.max(...records.filter((r) => r.user === user).map((r) => r.at))
    t.ok(list.length > 0 && list.every(([at]) => at > last - KEEP_DAYS * DAY && at <= last), `${String(user)} keeps only the purchases of the 30 days before its last record`)
  }
})

t.test('history - a user quiet for longer than the TTL (processing time) is forgotten', async (t) => {
  const clock = new ManualClock(0)
  const early: Activity[] = [
    { kind: 'purchase', user: 'quiet', at: 0, cents: 500 },
    { kind: 'purchase', user: 'busy', at: 0, cents: 700 },
  ]
  // The second half comes after the clock moved past the TTL; the quiet user only asks.
  let moved = false
  const late: Activity[] = [
    { kind: 'purchase', user: 'busy', at: DAY, cents: 300 },
    { kind: 'query', user: 'quiet', at: DAY, days: 30 },
    { kind: 'query', user: 'busy', at: DAY, days: 30 },
  ]
  const out: Answer[] = []
  const job = history(arraySink(out), [...early, ...late])
  const graph = job.graph()
  const source = graph.operators.find((o) => o.uid === 'activity')! as unknown as { source: { open: (ctx: unknown) => { poll: (e: (r: Activity) => void, max: number) => string } } }
  const open = source.source.open.bind(source.source)
  // Emits the early records, waits for the test to move the clock, then the late ones.
  source.source = {
    ...source.source,
    open: (ctx) => {
      const reader = open(ctx) as unknown as { poll: (e: (r: Activity) => void, max: number) => string; offset: () => number }
      return { ...reader, poll: (e: (r: Activity) => void, max: number) => (reader.offset() >= early.length && !moved ? 'idle' : reader.poll(e, reader.offset() < early.length ? Math.min(max, early.length - reader.offset()) : max)) }
    },
  }
  const running = testJob(graph, { clock })
  await new Promise((r) => setTimeout(r, 300))
  clock.advance(KEEP_DAYS * DAY + 1)
  moved = true
  await running
  t.same(order(out), order([
    { user: 'quiet', at: DAY, days: 30, purchases: 0, cents: 0 },
    { user: 'busy', at: DAY, days: 30, purchases: 1, cents: 300 },
  ]), 'both histories expired by TTL before the late records; busy has only its new purchase')
})
