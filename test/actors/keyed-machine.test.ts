/**
 * Keyed machines (docs/architecture.md section 19): an XState machine per key, events from
 * records, emitted events as output, delays as durable timers, versions and migrations, and the
 * mistakes a machine can make.
 */
import t from 'tap'
import { assign, emit, enqueueActions, fromPromise, raise, sendParent, sendTo, setup } from 'xstate'
import {
  arraySink,
  boundedOutOfOrderness,
  job,
  JobDefinitionError,
  JobFailedError,
  MachineActionError,
  MachineStateVersionError,
  readSnapshotState,
  runJob,
  type Clock,
  type RunOptions,
  type SnapshotStore,
  type Source,
} from '../../index.ts'
import { listSource } from '../support/windows.ts'
import { tempEmbeddedStore } from '../support/stores.ts'

interface Login {
  account: string
  type: 'fail' | 'success'
  at: number
}

const FIVE_MINUTES = 5 * 60_000

/** Three failed logins, then a success within five minutes of the first failure: an alert. */
const logins = setup({
  types: { context: {} as { fails: number }, events: {} as { type: 'fail' } | { type: 'success' } },
}).createMachine({
  id: 'logins',
  initial: 'quiet',
  context: { fails: 0 },
  states: {
    quiet: { on: { fail: { target: 'failing', actions: assign({ fails: 1 }) } } },
    failing: {
      after: { [FIVE_MINUTES]: { target: 'quiet', actions: assign({ fails: 0 }) } },
      on: {
        fail: { actions: assign({ fails: ({ context }) => context.fails + 1 }) },
        success: [
          { guard: ({ context }) => context.fails >= 3, target: 'quiet', actions: [emit(({ context }) => ({ type: 'suspicious-login', fails: context.fails })), assign({ fails: 0 })] },
          { target: 'quiet', actions: assign({ fails: 0 }) },
        ],
      },
    },
  },
})

function quiet(store: SnapshotStore, extra: Partial<RunOptions> = {}): RunOptions {
  return { store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, ...extra }
}

const byTime = boundedOutOfOrderness<Login>({ timestamp: (l) => l.at, maxOutOfOrdernessMs: 0 })

function loginJob(name: string, records: Login[], out: unknown[]) {
  return job(name)
    .source('in', listSource(records), { watermarks: byTime })
    .keyBy((l) => l.account)
    .machine('patterns', logins, { delays: 'event-time', event: (l) => ({ type: l.type }), parallelism: 2 })
    .sink('out', arraySink(out))
}

const min = 60_000
const events = ([
  // a: three failures, then a success within five minutes: an alert.
  { account: 'a', type: 'fail', at: 0 },
  { account: 'a', type: 'fail', at: 1 * min },
  { account: 'a', type: 'fail', at: 2 * min },
  { account: 'a', type: 'success', at: 3 * min },
  // b: three failures, but the success comes after the five minutes ran out: nothing.
  { account: 'b', type: 'fail', at: 0 },
  { account: 'b', type: 'fail', at: 1 * min },
  { account: 'b', type: 'fail', at: 2 * min },
  { account: 'b', type: 'success', at: 6 * min },
  // c: two failures and a success: nothing; then four failures and a success: an alert of 4.
  { account: 'c', type: 'fail', at: 7 * min },
  { account: 'c', type: 'fail', at: 7 * min + 1 },
  { account: 'c', type: 'success', at: 8 * min },
  { account: 'c', type: 'fail', at: 9 * min },
  { account: 'c', type: 'fail', at: 9 * min + 1 },
  { account: 'c', type: 'fail', at: 9 * min + 2 },
  { account: 'c', type: 'fail', at: 9 * min + 3 },
  { account: 'c', type: 'success', at: 10 * min },
] as Login[]).sort((x, y) => x.at - y.at)

t.test('keyed machine - emitted events are the output, per key, with event-time delays', async (t) => {
  const store = tempEmbeddedStore(t)
  const out: unknown[] = []
  const result = await runJob(loginJob('logins', events, out), quiet(store, { checkpoints: { intervalMs: 20 } }))
  t.equal(result.status, 'finished')
  t.same(
    [...out].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))),
    [
      { key: 'a', type: 'suspicious-login', fails: 3 },
      { key: 'c', type: 'suspicious-login', fails: 4 },
    ],
  )
  // Every machine is back in `quiet` with no delay pending: the five minutes of b ran out by event time.
  const state = (await readSnapshotState(store, 'logins', 'patterns', 'machine')) as Map<string, { v: number; s: { value: string; context: { fails: number } }; d: unknown[] }>
  t.same([...state.keys()].sort(), ['a', 'b', 'c'])
  for (const [key, m] of state) {
    t.equal(m.s.value, 'quiet', `${key} is quiet`)
    t.equal(m.d.length, 0, `${key} has no delay pending`)
    t.equal(m.v, 1)
  }
})

t.test('keyed machine - processing-time delays fire on the clock, and a final state drops the key', async (t) => {
  const store = tempEmbeddedStore(t)
  let now = 1_000
  const clock: Clock = { now: () => now }
  const reminder = setup({}).createMachine({
    id: 'reminder',
    initial: 'waiting',
    states: {
      waiting: { after: { 1000: { target: 'done', actions: emit({ type: 'reminder' }) } }, on: { cancel: 'done' } },
      done: { type: 'final' },
    },
  })
  const out: { key: string; type: string }[] = []
  // Emits its records, then idles until the test says it may end (processing-time timers pending at the end are dropped).
  let mayEnd = false
  const records = [{ id: 'x', type: 'start' }, { id: 'y', type: 'start' }, { id: 'y', type: 'cancel' }]
  const source: Source<{ id: string; type: string }> = {
    kind: 'test',
    open() {
      let next = 0
      return {
        poll(e) {
          if (next < records.length) {
            e(records[next++]!)
            return 'more'
          }
          return mayEnd ? 'end' : 'idle'
        },
        offset: () => next,
      }
    },
  }
  const j = job('reminders').source('in', source).keyBy((r) => r.id).machine('reminders', reminder).sink('out', arraySink(out))
  const done = runJob(j, quiet(store, { clock, checkpoints: { intervalMs: 10 } }))
  await new Promise((r) => setTimeout(r, 200))
  t.same(out, [], 'nothing before the delay ran out')
  now += 1_000
  const until = Date.now() + 10_000
  while (out.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
  mayEnd = true
  t.equal((await done).status, 'finished')
  t.same(out, [{ key: 'x', type: 'reminder' }], 'x got its reminder; y was canceled first')
  const state = await readSnapshotState(store, 'reminders', 'reminders', 'machine')
  t.equal(state.size, 0, 'machines that reached their final state left no state behind')
})

t.test('keyed machine - a version 2 of the machine migrates the snapshots of version 1; a newer snapshot than the machine fails clearly', async (t) => {
  const store = tempEmbeddedStore(t)
  const v1 = setup({ types: { context: {} as { count: number } } }).createMachine({
    id: 'counter',
    context: { count: 0 },
    on: { add: { actions: assign({ count: ({ context }) => context.count + 1 }) } },
  })
  const v2 = setup({ types: { context: {} as { total: number } } }).createMachine({
    id: 'counter',
    context: { total: 0 },
    on: { add: { actions: [assign({ total: ({ context }) => context.total + 10 }), emit(({ context }) => ({ type: 'total', total: context.total }))] } },
  })
  const adds = [...'abcab'].map((k) => ({ k, type: 'add' }))
  const counterJob = (machine: typeof v1 | typeof v2, records: typeof adds, options: object, out: unknown[] = []) =>
    job('counters').source('in', listSource(records)).keyBy((r) => r.k).machine('counters', machine as typeof v1, options).sink('out', arraySink(out))

  t.equal((await runJob(counterJob(v1, adds, {}), quiet(store, { checkpoints: { intervalMs: 10 } }))).status, 'finished')
  const out: unknown[] = []
  // The same list and three more records: the source resumes after the first five.
  const more = [...adds, ...[...'abc'].map((k) => ({ k, type: 'add' }))]
  const migrate = (s: unknown, from: number) => {
    t.equal(from, 1)
    const old = s as { context: { count: number } }
    return { ...old, context: { total: old.context.count * 10 } }
  }
  const second = await runJob(counterJob(v2, more, { version: 2, migrate }, out), quiet(store, { restore: 'latest', checkpoints: { intervalMs: 10 } }))
  t.equal(second.status, 'finished')
  t.same([...out].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))), [
    { key: 'a', type: 'total', total: 30 },
    { key: 'b', type: 'total', total: 30 },
    { key: 'c', type: 'total', total: 20 },
  ])

  // Back to version 1 over snapshots of version 2: refused, naming both versions.
  const third = await runJob(counterJob(v1, [...more, { k: 'a', type: 'add' }], {}), quiet(store, { restore: 'latest' })).catch((e: unknown) => e)
  // Terminal: no restart could help, so the job fails with it at once.
  t.type(third, MachineStateVersionError)
  t.match((third as Error).message, /stored snapshot of version 2 is newer than the machine .* \(the machine is version 1\)/)

  // Version 3 without a migrate: refused at the first event of an old key.
  const fourth = await runJob(counterJob(v2, [...more, { k: 'a', type: 'add' }], { version: 3 }), quiet(store, { restore: 'latest' })).catch((e: unknown) => e)
  t.type(fourth, MachineStateVersionError)
  t.match((fourth as Error).message, /give the machine a migrate/)
})

const sendAdvice = "emit() the event instead: it becomes the operator's output, and a process downstream can pass it on to another operator with ctx.send(operator, key, message)"

t.test('keyed machine - sendTo and sendParent are refused when the job is defined, saying to emit instead', async (t) => {
  const keyed = () => job('sends').source('in', listSource([{ type: 'go' }])).keyBy(() => 'k')
  const cases = [
    ['sendTo on entry', setup({}).createMachine({ id: 'm', initial: 'a', states: { a: { entry: sendTo('billing', { type: 'charge' }) as never } } }), /state m.a of the machine has an action sendTo that sends an event to actor 'billing', but a keyed machine runs alone/],
    ['sendTo on an event', setup({}).createMachine({ id: 'm', initial: 'a', states: { a: { on: { go: { actions: sendTo('billing', { type: 'charge' }) as never } } } } }), /action sendTo that sends an event to actor 'billing'/],
    ['a named sendTo of setup', setup({ actions: { bill: sendTo('billing', { type: 'charge' }) as never } }).createMachine({ id: 'm', initial: 'a', states: { a: { exit: 'bill', on: { go: 'b' } }, b: {} } }), /action sendTo \(bill\) that sends/],
    ['sendParent after a delay', setup({}).createMachine({ id: 'm', initial: 'a', states: { a: { after: { 1000: { actions: sendParent({ type: 'done' }) as never } } } } }), /action sendParent that sends an event to a parent, but a keyed machine runs alone/],
  ] as const
  for (const [what, machine, message] of cases) {
    t.throws(() => keyed().machine('m', machine), { name: 'JobDefinitionError', retryable: false, message }, what)
    t.throws(() => keyed().machine('m', machine), { message: new RegExp(`^job sends, operator m: .*${sendAdvice.replace(/[()]/g, '\\$&')}$`) }, `${what}: says what to use instead`)
  }
})

t.test('keyed machine - a sendTo made while running fails the job at once with MachineActionError, never retried', async (t) => {
  const store = tempEmbeddedStore(t)
  // enqueueActions decides while it runs, so the definition cannot show the send.
  const machine = setup({}).createMachine({ id: 'm', initial: 'a', states: { a: { on: { go: { actions: enqueueActions(({ enqueue }) => enqueue.sendTo('billing', { type: 'charge' })) } } } } })
  let attempts = 0
  const counted: Source<{ type: string }> = {
    kind: 'counted',
    open(ctx) {
      attempts++
      return listSource([{ type: 'go' }]).open(ctx)
    },
  }
  const err = await runJob(
    job('send-dynamic').source('in', counted).keyBy(() => 'k').machine('m', machine).sink('out', arraySink([])),
    quiet(store, { restart: { type: 'fixed-delay', attempts: 3, delayMs: 1 } }),
  ).catch((e: unknown) => e)
  t.type(err, MachineActionError, 'terminal, not a UserCodeError retried by the restart strategy')
  t.match(err, { action: 'sendTo', operator: 'm', key: 'k', retryable: false })
  t.equal((err as Error).message, `machine m, key "k", in state "a": action sendTo sends an event to actor 'billing', but a keyed machine runs alone (no parent, no other actors, so nothing it sent would be exactly once); ${sendAdvice}`)
  t.match((err as Error).cause, { message: /Unable to send event to actor 'billing'/ }, "XState's error is the cause")
  t.equal(attempts, 1, 'one attempt')
})

t.test('keyed machine - effects that would run again on replay are refused; definition mistakes fail at once', async (t) => {
  const store = tempEmbeddedStore(t)
  const withAction = setup({ actions: { notify: () => {} } }).createMachine({ id: 'n', on: { go: { actions: 'notify' } } })
  const failed = await runJob(
    job('effects').source('in', listSource([{ type: 'go' }])).keyBy(() => 'k').machine('effects', withAction).sink('out', arraySink([])),
    quiet(store),
  ).catch((e: unknown) => e)
  t.type(failed, MachineActionError)
  t.match((failed as Error).message, /machine effects, key "k", in state .*: action notify has an effect that would run again on every replay/)

  const noTimestamp = setup({}).createMachine({ id: 'd', on: { go: { actions: raise({ type: 'later' }, { delay: 10 }) } } })
  const untimed = await runJob(
    job('untimed').source('in', listSource([{ type: 'go' }])).keyBy(() => 'k').machine('untimed', noTimestamp, { delays: 'event-time' }).sink('out', arraySink([])),
    quiet(store),
  ).catch((e: unknown) => e)
  t.type(untimed, MachineActionError)
  t.match((untimed as Error).message, /no timestamp/)

  const invoking = setup({ actors: { load: fromPromise(async () => 1) } }).createMachine({ id: 'i', initial: 'a', states: { a: { invoke: { src: 'load' } } } })
  const keyed = () => job('bad').source('in', listSource([{ type: 'x' }])).keyBy(() => 'k')
  t.throws(() => keyed().machine('m', invoking), JobDefinitionError, 'invoke is refused')
  t.throws(() => keyed().machine('m', {} as never), /needs an XState v5 machine/)
  t.throws(() => keyed().machine('m', logins, { version: 0 }), /version must be an integer >= 1/)
  t.throws(() => keyed().machine('m', logins, { delays: 'wall' as never }), /delays must be/)
  t.throws(() => keyed().machine('m', logins, { colour: 1 } as never), /unknown machine option colour/)
  t.throws(() => keyed().machine('m', logins, { event: async () => ({ type: 'x' }) } as never), /async/)

  const badEvent = await runJob(job('bad-event').source('in', listSource([{ kind: 'no type' }])).keyBy(() => 'k').machine('m', logins).sink('out', arraySink([])), quiet(store)).catch((e: unknown) => e)
  t.match(String((badEvent as JobFailedError).cause), /an event must be an object with a string type/)
})
