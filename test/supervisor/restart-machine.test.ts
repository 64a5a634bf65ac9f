import t from 'tap'
import { SimulatedClock } from 'xstate'
import { createRestartActor, type RestartActor } from '../../supervisor/restart-machine.ts'
import { resolveRestartStrategy, type RestartStrategyOptions } from '../../supervisor/restart-strategy.ts'

function start(
  options: RestartStrategyOptions,
  random: () => number = () => 0.5,
): { actor: RestartActor; clock: SimulatedClock; states: string[] } {
  const clock = new SimulatedClock()
  const actor = createRestartActor(resolveRestartStrategy(options), { clock, random })
  const states: string[] = []
  actor.subscribe((snapshot) => {
    if (states.at(-1) !== snapshot.value) states.push(String(snapshot.value))
  })
  actor.start()
  return { actor, clock, states }
}

function fail(actor: RestartActor, clock: SimulatedClock, error: unknown = new Error('boom')): void {
  actor.send({ type: 'FAILED', error, at: clock.now() })
}

t.test('machine - starts idle with an empty history', async (t) => {
  const { actor } = start({ type: 'fixed-delay' })
  t.match(actor.getSnapshot(), {
    value: 'idle',
    status: 'active',
    context: { restarts: 0, lastDelayMs: null, reason: null, history: { failures: 0 } },
  })
})

t.test('machine - FAILED waits the decided delay exactly, then restarts', async (t) => {
  const { actor, clock } = start({ type: 'fixed-delay', delayMs: 1000 })
  const error = new Error('operator threw')
  fail(actor, clock, error)
  t.match(actor.getSnapshot(), { value: 'waiting', context: { lastDelayMs: 1000, lastError: error } })
  clock.increment(999)
  t.equal(actor.getSnapshot().value, 'waiting', 'not a millisecond early')
  clock.increment(1)
  t.match(actor.getSnapshot(), { value: 'restarting', context: { restarts: 1 } })
})

t.test('machine - RESTARTED returns to idle, keeping the history', async (t) => {
  const { actor, clock, states } = start({ type: 'fixed-delay', delayMs: 10 })
  fail(actor, clock)
  clock.increment(10)
  actor.send({ type: 'RESTARTED' })
  t.match(actor.getSnapshot(), {
    value: 'idle',
    context: { restarts: 1, history: { failures: 1, attempts: 1 } },
  })
  t.same(states, ['idle', 'waiting', 'restarting', 'idle'], 'the transient deciding state never shows')
})

t.test('machine - RESTARTED outside restarting is ignored', async (t) => {
  const { actor, clock } = start({ type: 'fixed-delay' })
  actor.send({ type: 'RESTARTED' })
  t.equal(actor.getSnapshot().value, 'idle')
  fail(actor, clock)
  actor.send({ type: 'RESTARTED' })
  t.match(actor.getSnapshot(), { value: 'waiting', context: { restarts: 0 } })
})

t.test('machine - gives up in the final exhausted state with the reason and last error', async (t) => {
  const { actor, clock } = start({ type: 'fixed-delay', attempts: 1, delayMs: 100 })
  fail(actor, clock)
  clock.increment(100)
  actor.send({ type: 'RESTARTED' })
  clock.increment(5000)
  const last = new Error('still broken')
  fail(actor, clock, last)
  const snapshot = actor.getSnapshot()
  t.equal(snapshot.value, 'exhausted')
  t.equal(snapshot.status, 'done')
  t.same(snapshot.output, {
    reason: 'fixed-delay strategy: 1 restart attempt used',
    lastError: last,
  })
  t.match(snapshot.context, { restarts: 1, history: { failures: 2 } })
})

t.test('machine - none strategy is exhausted by the first failure', async (t) => {
  const { actor, clock } = start({ type: 'none' })
  fail(actor, clock)
  t.match(actor.getSnapshot(), {
    value: 'exhausted',
    status: 'done',
    output: { reason: 'none strategy: restarts are disabled' },
  })
})

t.test('machine - a FAILED while waiting is decided again and starts a fresh wait', async (t) => {
  const { actor, clock } = start({ type: 'exponential-backoff', jitter: 0 })
  fail(actor, clock) // at 0: wait 100
  clock.increment(50)
  fail(actor, clock) // at 50: wait 200, until 250
  t.match(actor.getSnapshot(), {
    value: 'waiting',
    context: { lastDelayMs: 200, history: { failures: 2 } },
  })
  clock.increment(50)
  t.equal(actor.getSnapshot().value, 'waiting', 'the first wait was cancelled')
  clock.increment(149)
  t.equal(actor.getSnapshot().value, 'waiting')
  clock.increment(1)
  t.match(actor.getSnapshot(), { value: 'restarting', context: { restarts: 1 } })
})

t.test('machine - a FAILED while restarting counts as another failure', async (t) => {
  const { actor, clock } = start({ type: 'fixed-delay', attempts: 2, delayMs: 10 })
  fail(actor, clock)
  clock.increment(10)
  t.equal(actor.getSnapshot().value, 'restarting')
  fail(actor, clock) // the restart itself failed
  t.match(actor.getSnapshot(), { value: 'waiting', context: { history: { attempts: 2 } } })
  clock.increment(10)
  fail(actor, clock)
  t.match(actor.getSnapshot(), {
    value: 'exhausted',
    output: { reason: 'fixed-delay strategy: 2 restart attempts used' },
  })
})

t.test('machine - a FAILED while waiting can exhaust the strategy', async (t) => {
  const { actor, clock } = start({
    type: 'failure-rate',
    maxFailures: 1,
    intervalMs: 1000,
    delayMs: 500,
  })
  fail(actor, clock)
  clock.increment(100)
  fail(actor, clock)
  t.match(actor.getSnapshot(), {
    value: 'exhausted',
    output: { reason: 'failure-rate strategy: 2 failures within 1000 ms (max 1)' },
  })
  clock.increment(1000)
  t.equal(actor.getSnapshot().value, 'exhausted', 'the cancelled wait does not fire')
})

t.test('machine - uses the injected random source for jitter', async (t) => {
  const { actor, clock } = start({ type: 'exponential-backoff', initialMs: 1000, jitter: 0.5 }, () => 0)
  fail(actor, clock)
  t.equal(actor.getSnapshot().context.lastDelayMs, 500)
  clock.increment(499)
  t.equal(actor.getSnapshot().value, 'waiting')
  clock.increment(1)
  t.equal(actor.getSnapshot().value, 'restarting')
})

t.test('machine - the backoff resets after a quiet period between runs', async (t) => {
  const { actor, clock } = start({ type: 'exponential-backoff', jitter: 0, resetAfterMs: 1000 })
  const delays: (number | null)[] = []
  for (const gap of [0, 10, 10, 5000, 10]) {
    clock.increment(gap)
    fail(actor, clock)
    delays.push(actor.getSnapshot().context.lastDelayMs)
    clock.increment(actor.getSnapshot().context.lastDelayMs ?? 0)
    actor.send({ type: 'RESTARTED' })
  }
  t.same(delays, [100, 200, 400, 100, 200])
  t.equal(actor.getSnapshot().context.restarts, 5)
})
