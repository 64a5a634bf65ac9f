/**
 * Historic data per key (use 4 of docs/architecture.md section 13): per user, the purchases of
 * the last 30 days kept in list state, and queries answered from it. Queries arrive as records
 * of the same stream (queryable state comes later), so each one sees exactly the purchases before
 * it. Old purchases leave the list two ways: by event time, when a newer purchase or query of the
 * user is 30 days past them, and by state TTL (processing time), so users that go quiet do not
 * keep their history forever.
 *
 *   npx weir run examples/history/job.ts
 */
import { job, listState, stdoutSink, type Sink } from 'weir'
import { arraySource } from '../support/array-source.ts'

export const DAY = 24 * 3_600_000
export const KEEP_DAYS = 30

/** A purchase, or a query for a user's purchases of the last `days` days (at most 30). */
export type Activity = { kind: 'purchase'; user: string; at: number; cents: number } | { kind: 'query'; user: string; at: number; days: number }

/** The answer to a query. */
export interface Answer {
  user: string
  at: number
  days: number
  purchases: number
  cents: number
}

/** Each user's purchases of the last 30 days as [time, cents]; forgotten 30 days after the user's last purchase. */
export const recent = listState<[number, number]>('recent', { ttl: { ttlMs: KEEP_DAYS * DAY } })

/** Deterministic activity: `count` records over `users` users, one every 20 minutes of event time, one in ten a query. */
export function activity(count = 20_000, users = 50): Activity[] {
  const out: Activity[] = []
  const start = Date.UTC(2026, 0, 1)
  for (let i = 0; i < count; i++) {
    const user = `user-${(i * 7_919) % users}`
    const at = start + i * 20 * 60_000
    if (i % 10 === 9) out.push({ kind: 'query', user, at, days: 1 + ((i * 31) % KEEP_DAYS) })
    else out.push({ kind: 'purchase', user, at, cents: 100 + ((i * 104_729) % 9_900) })
  }
  return out
}

/** The job, writing its answers to `sink`. */
export function history(sink: Sink<Answer>, records: readonly Activity[] = activity()) {
  return job('history')
    .source('activity', arraySource(records))
    .keyBy((a) => a.user)
    .process('history', { state: { recent }, parallelism: 2 }, (a: Activity, ctx) => {
      const list = ctx.state(recent)
      // Drop what is older than 30 days by event time, so the list stays bounded while the user is active.
      const kept = list.get().filter(([at]) => at > a.at - KEEP_DAYS * DAY)
      if (a.kind === 'purchase') {
        list.update([...kept, [a.at, a.cents]])
        return
      }
      if (kept.length !== list.get().length) list.update(kept)
      const since = a.at - a.days * DAY
      let purchases = 0
      let cents = 0
      for (const [at, c] of kept) {
        if (at <= since) continue
        purchases++
        cents += c
      }
      ctx.emit({ user: a.user, at: a.at, days: a.days, purchases, cents })
    })
    .sink('answers', sink)
}

export default history(stdoutSink())
