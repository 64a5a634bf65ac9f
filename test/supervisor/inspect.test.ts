/**
 * RunOptions.inspect: XState's inspection of the job's and the instances' lifecycle actors, so a
 * test or a tool watches transitions instead of reading log lines.
 */
import t from 'tap'
import type { AnyActorRef, InspectionEvent } from 'xstate'
import { generatorSource, job, runJob, valueState } from '../../index.ts'
import { embeddedTestStore } from '../support/stores.ts'

const count = valueState<number>('count', { default: 0 })
const counting = () =>
  job('inspected', { maxParallelism: 16 })
    .source('in', generatorSource({ records: 2000, keys: 20 }))
    .keyBy((r) => r.key)
    .process('count', { state: { count }, parallelism: 2 }, (_r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
    }).job

/** The distinct states each actor went through, in order, from `@xstate.snapshot` events. */
function watch(): { inspect: (e: InspectionEvent) => void; states: Map<string, string[]> } {
  const states = new Map<string, string[]>()
  return {
    states,
    inspect: (e) => {
      if (e.type !== '@xstate.snapshot') return
      const id = (e.actorRef as AnyActorRef).id
      const value = JSON.stringify((e.snapshot as unknown as { value: unknown }).value)
      const seen = states.get(id) ?? []
      if (seen.at(-1) !== value) seen.push(value)
      states.set(id, seen)
    },
  }
}

t.test('every lifecycle transition of the job and its instances, by actor id', async (tt) => {
  const ts = embeddedTestStore()
  tt.teardown(() => ts.cleanup())
  const { inspect, states } = watch()
  const result = await runJob(counting(), { store: ts.store, checkpoints: { intervalMs: 20 }, logLevel: 'silent', inspect })
  tt.equal(result.status, 'finished')
  tt.same([...states.keys()].sort(), ['count[0]', 'count[1]', 'in[0]', 'inspected'], 'the job and each instance, named')
  tt.same(states.get('inspected')!.slice(-2), ['"running"', '"finished"'], 'the job ran and finished')
  for (const id of ['in[0]', 'count[0]', 'count[1]']) {
    const seen = states.get(id)!
    tt.equal(seen[0], '"created"', `${id} starts created`)
    tt.ok(
      seen.some((v) => v.includes('processing')),
      `${id} processed`,
    )
    tt.equal(seen.at(-1), '"finished"', `${id} ends finished`)
  }
})

t.test('an observer works as well; anything else is refused', async (tt) => {
  const ts = embeddedTestStore()
  tt.teardown(() => ts.cleanup())
  let events = 0
  await runJob(counting(), { store: ts.store, logLevel: 'silent', inspect: { next: () => void events++ } })
  tt.ok(events > 10, `the observer got ${events} events`)
  await tt.rejects(runJob(counting(), { inspect: 42 as never }), /option inspect: expected a function or an observer/)
})
