import t from 'tap'
import { InvalidOptionError, UnknownOptionError } from '../../supervisor/errors.ts'
import { decideRestart, initialRestartHistory, type RestartDecision, type RestartHistory } from '../../supervisor/restart-decision.ts'
import { describeRestartStrategy, resolveRestartStrategy, type ResolvedRestartStrategy } from '../../supervisor/restart-strategy.ts'

const noRandom = (): number => {
  throw new Error('random() must not be called here')
}

/** Feeds failures at the given times through one strategy, as the supervisor would. */
function failAt(
  strategy: ResolvedRestartStrategy,
  times: readonly number[],
  random: () => number = noRandom,
): RestartDecision[] {
  let history: RestartHistory = initialRestartHistory()
  return times.map((at) => {
    const decision = decideRestart(strategy, history, at, random)
    history = decision.history
    return decision
  })
}

const delays = (decisions: readonly RestartDecision[]): (number | string)[] =>
  decisions.map((d) => (d.restart ? d.delayMs : `gave up: ${d.reason}`))

t.test('resolve - fills every default of every strategy', async (t) => {
  t.same(resolveRestartStrategy({ type: 'none' }), { type: 'none' })
  t.same(resolveRestartStrategy({ type: 'fixed-delay' }), {
    type: 'fixed-delay',
    attempts: 3,
    delayMs: 1000,
  })
  t.same(resolveRestartStrategy({ type: 'exponential-backoff' }), {
    type: 'exponential-backoff',
    initialMs: 100,
    maxMs: 60_000,
    multiplier: 2,
    jitter: 0.1,
    resetAfterMs: 3_600_000,
    attempts: Infinity,
  })
  t.same(resolveRestartStrategy({ type: 'failure-rate' }), {
    type: 'failure-rate',
    maxFailures: 3,
    intervalMs: 300_000,
    delayMs: 1000,
  })
})

t.test('resolve - no strategy at all means exponential backoff from 1 s to 1 min, 10 restarts in a row', async (t) => {
  t.same(resolveRestartStrategy(undefined), {
    type: 'exponential-backoff',
    initialMs: 1000,
    maxMs: 60_000,
    multiplier: 2,
    jitter: 0.1,
    resetAfterMs: 3_600_000,
    attempts: 10,
  })
})

t.test('default strategy - rides out a database that is gone for well over 30 s', async (t) => {
  // Failures in a row, each at once (a store that refuses connections), with the shortest waits
  // jitter allows (random() = 0 takes 10% off every wait).
  const strategy = resolveRestartStrategy(undefined)
  let history = initialRestartHistory()
  let now = 0
  const waits: number[] = []
  for (;;) {
    const d = decideRestart(strategy, history, now, () => 0)
    history = d.history
    if (!d.restart) break
    waits.push(d.delayMs)
    now += d.delayMs
  }
  t.same(waits, [900, 1800, 3600, 7200, 14_400, 28_800, 54_000, 54_000, 54_000, 54_000], 'doubling from 1 s (less 10%), up to 1 min')
  t.equal(waits.slice(0, 5).reduce((a, b) => a + b), 27_900, 'five restarts in the first 28 s')
  t.equal(now, 272_700, 'restarts for 272.7 s before giving up: a 30 s database restart is ridden out many times over')
  t.equal(history.attempts, 10)
})

t.test('resolve - a wait above 2^31-1 ms (what a timer can wait) is rejected, not fired at once', async (t) => {
  t.throws(() => resolveRestartStrategy({ type: 'fixed-delay', delayMs: 2 ** 31 }), {
    name: 'InvalidOptionError',
    option: 'restart.delayMs',
    message: 'option restart.delayMs: expected a number of milliseconds from 0 to 2147483647, got 2147483648',
  })
  t.throws(() => resolveRestartStrategy({ type: 'exponential-backoff', maxMs: 1e12 }), { name: 'InvalidOptionError', option: 'restart.maxMs', message: /to 2147483647, got 1000000000000$/ })
  t.throws(() => resolveRestartStrategy({ type: 'exponential-backoff', initialMs: 3e9 }), { name: 'InvalidOptionError', option: 'restart.initialMs' })
  t.throws(() => resolveRestartStrategy({ type: 'failure-rate', delayMs: 3e9 }), { name: 'InvalidOptionError', option: 'restart.delayMs' })
  const max = resolveRestartStrategy({ type: 'exponential-backoff', initialMs: 2 ** 31 - 1, jitter: 1 })
  const d = decideRestart(max, initialRestartHistory(), 0, () => 0.999)
  t.ok(d.restart && d.delayMs === 2 ** 31 - 1, 'jitter never spreads a wait past the longest a timer can wait')
})

t.test('resolve - keeps the values the user gave, and treats undefined as omitted', async (t) => {
  t.same(
    resolveRestartStrategy({
      type: 'exponential-backoff',
      initialMs: 50,
      maxMs: 500,
      multiplier: 1.5,
      jitter: 0,
      resetAfterMs: Infinity,
      attempts: 7,
    }),
    {
      type: 'exponential-backoff',
      initialMs: 50,
      maxMs: 500,
      multiplier: 1.5,
      jitter: 0,
      resetAfterMs: Infinity,
      attempts: 7,
    },
  )
  t.same(resolveRestartStrategy({ type: 'fixed-delay', attempts: 0, delayMs: undefined }), {
    type: 'fixed-delay',
    attempts: 0,
    delayMs: 1000,
  })
})

t.test('resolve - an initialMs above the default maxMs raises the default maxMs', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'exponential-backoff', initialMs: 120_000 })
  t.match(strategy, { initialMs: 120_000, maxMs: 120_000 })
})

t.test('resolve - rejects a strategy that is not an object', async (t) => {
  for (const value of [null, 'fixed-delay', 3, ['fixed-delay']]) {
    t.throws(() => resolveRestartStrategy(value), {
      name: 'InvalidOptionError',
      option: 'restart',
      message: /^option restart: expected an object with a type/,
    })
  }
})

t.test('resolve - rejects a missing or unknown type, listing the known ones', async (t) => {
  t.throws(() => resolveRestartStrategy({}), {
    name: 'InvalidOptionError',
    option: 'restart.type',
    message:
      'option restart.type: expected one of "none", "fixed-delay", "exponential-backoff", ' +
      '"failure-rate", got undefined',
  })
  t.throws(() => resolveRestartStrategy({ type: 'exponential' }), {
    option: 'restart.type',
    value: 'exponential',
    message: /got "exponential"$/,
  })
  t.throws(() => resolveRestartStrategy({ type: 1 }), InvalidOptionError)
})

t.test('resolve - rejects an unknown key, naming it and the known ones', async (t) => {
  t.throws(() => resolveRestartStrategy({ type: 'fixed-delay', delay: 500 }), {
    name: 'UnknownOptionError',
    option: 'restart.delay',
    known: ['type', 'attempts', 'delayMs'],
    message: 'unknown option restart.delay; known options: type, attempts, delayMs',
  })
  // A key of another strategy is a mistake too: it would be silently ignored otherwise.
  t.throws(
    () => resolveRestartStrategy({ type: 'fixed-delay', multiplier: 2 }),
    new UnknownOptionError('restart.multiplier', ['type', 'attempts', 'delayMs']),
  )
  t.throws(() => resolveRestartStrategy({ type: 'none', attempts: 1 }), {
    name: 'UnknownOptionError',
    option: 'restart.attempts',
  })
})

t.test('resolve - rejects every out-of-range or mistyped value with its option path', async (t) => {
  const cases: [options: Record<string, unknown>, option: string, expected: RegExp][] = [
    [{ type: 'fixed-delay', delayMs: -1 }, 'restart.delayMs', /number of milliseconds from 0 to 2147483647, got -1$/],
    [{ type: 'fixed-delay', delayMs: '1000' }, 'restart.delayMs', /got "1000"$/],
    [{ type: 'fixed-delay', delayMs: NaN }, 'restart.delayMs', /got NaN$/],
    [{ type: 'fixed-delay', delayMs: Infinity }, 'restart.delayMs', /got Infinity$/],
    [{ type: 'fixed-delay', attempts: -1 }, 'restart.attempts', /non-negative integer/],
    [{ type: 'fixed-delay', attempts: 1.5 }, 'restart.attempts', /non-negative integer/],
    [{ type: 'fixed-delay', attempts: Infinity }, 'restart.attempts', /non-negative integer, got/],
    [{ type: 'exponential-backoff', initialMs: 0 }, 'restart.initialMs', /positive number/],
    [{ type: 'exponential-backoff', initialMs: -5 }, 'restart.initialMs', /positive number/],
    [{ type: 'exponential-backoff', multiplier: 0.5 }, 'restart.multiplier', /at least 1/],
    [{ type: 'exponential-backoff', multiplier: Infinity }, 'restart.multiplier', /at least 1/],
    [{ type: 'exponential-backoff', jitter: -0.1 }, 'restart.jitter', /between 0 and 1/],
    [{ type: 'exponential-backoff', jitter: 1.5 }, 'restart.jitter', /between 0 and 1/],
    [
      { type: 'exponential-backoff', initialMs: 1000, maxMs: 999 },
      'restart.maxMs',
      /from initialMs \(1000\) to 2147483647, got 999$/,
    ],
    [{ type: 'exponential-backoff', maxMs: 50 }, 'restart.maxMs', /from initialMs \(100\)/],
    [{ type: 'exponential-backoff', resetAfterMs: 0 }, 'restart.resetAfterMs', /positive/],
    [{ type: 'exponential-backoff', attempts: -1 }, 'restart.attempts', /or Infinity/],
    [{ type: 'failure-rate', maxFailures: 2.5 }, 'restart.maxFailures', /non-negative integer/],
    [{ type: 'failure-rate', intervalMs: 0 }, 'restart.intervalMs', /positive number/],
    [{ type: 'failure-rate', delayMs: -1 }, 'restart.delayMs', /from 0 to/],
  ]
  for (const [options, option, expected] of cases) {
    t.throws(
      () => resolveRestartStrategy(options),
      { name: 'InvalidOptionError', option, retryable: false, message: expected },
      `${JSON.stringify(options)} is rejected`,
    )
  }
})

t.test('none - never restarts, and says so', async (t) => {
  const [decision] = failAt(resolveRestartStrategy({ type: 'none' }), [0])
  t.same(decision, {
    restart: false,
    reason: 'none strategy: restarts are disabled',
    history: { ...initialRestartHistory(), failures: 1, lastFailureAt: 0 },
  })
})

t.test('fixed-delay - restarts after the same delay each time', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'fixed-delay', attempts: 3, delayMs: 250 })
  t.same(delays(failAt(strategy, [0, 1000, 2000])), [250, 250, 250])
})

t.test('fixed-delay - gives up after the configured attempts', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'fixed-delay', attempts: 3 })
  const decisions = failAt(strategy, [0, 10, 20, 30, 40])
  t.same(delays(decisions), [
    1000,
    1000,
    1000,
    'gave up: fixed-delay strategy: 3 restart attempts used',
    'gave up: fixed-delay strategy: 3 restart attempts used',
  ])
  t.match(decisions[3]?.history, { failures: 4, attempts: 3, lastFailureAt: 30 })
})

t.test('fixed-delay - zero attempts gives up on the first failure', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'fixed-delay', attempts: 0 })
  t.same(delays(failAt(strategy, [0])), ['gave up: fixed-delay strategy: 0 restart attempts used'])
  const one = resolveRestartStrategy({ type: 'fixed-delay', attempts: 1 })
  t.same(delays(failAt(one, [0, 1])), [1000, 'gave up: fixed-delay strategy: 1 restart attempt used'])
})

t.test('decide - never changes the history it is given', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'failure-rate' })
  const history: RestartHistory = Object.freeze({
    ...initialRestartHistory(),
    recentFailureTimes: Object.freeze([5]),
  })
  const decision = decideRestart(strategy, history, 10, noRandom)
  t.same(history, { ...initialRestartHistory(), recentFailureTimes: [5] })
  t.same(decision.history.recentFailureTimes, [5, 10])
})

t.test('exponential-backoff - multiplies the delay each failure up to maxMs', async (t) => {
  const strategy = resolveRestartStrategy({
    type: 'exponential-backoff',
    initialMs: 100,
    maxMs: 1000,
    multiplier: 3,
    jitter: 0,
  })
  t.same(delays(failAt(strategy, [0, 1, 2, 3, 4, 5])), [100, 300, 900, 1000, 1000, 1000])
})

t.test('exponential-backoff - jitter spreads the delay by at most ±jitter × delay', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'exponential-backoff', initialMs: 1000, jitter: 0.2 })
  const first = (random: number): RestartDecision =>
    decideRestart(strategy, initialRestartHistory(), 0, () => random)
  t.match(first(0), { restart: true, delayMs: 800 })
  t.match(first(0.5), { restart: true, delayMs: 1000 })
  t.match(first(0.75), { restart: true, delayMs: 1100 })
  t.match(first(0.999_999), { restart: true, delayMs: 1200 })
  for (let random = 0; random < 1; random += 0.01) {
    const decision = first(random)
    t.ok(decision.restart && decision.delayMs >= 800 && decision.delayMs <= 1200)
  }
})

t.test('exponential-backoff - jitter does not compound into the next delay', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'exponential-backoff', jitter: 0.5 })
  // Always the lowest draw: 100 -> 50, 200 -> 100, 400 -> 200; the base keeps doubling unjittered.
  t.same(delays(failAt(strategy, [0, 1, 2], () => 0)), [50, 100, 200])
  t.equal(failAt(strategy, [0, 1, 2], () => 0)[2]?.history.backoffMs, 400)
})

t.test('exponential-backoff - a quiet period longer than resetAfterMs resets to initialMs', async (t) => {
  const strategy = resolveRestartStrategy({
    type: 'exponential-backoff',
    jitter: 0,
    resetAfterMs: 10_000,
  })
  // 10_000 ms after the previous failure is not yet quiet enough; 10_001 ms is.
  t.same(delays(failAt(strategy, [0, 1000, 2000, 12_000, 22_001, 23_000])), [
    100, 200, 400, 800, 100, 200,
  ])
})

t.test('exponential-backoff - resetAfterMs Infinity never resets', async (t) => {
  const strategy = resolveRestartStrategy({
    type: 'exponential-backoff',
    jitter: 0,
    resetAfterMs: Infinity,
  })
  t.same(delays(failAt(strategy, [0, 1e12, 2e12])), [100, 200, 400])
})

t.test('exponential-backoff - gives up after attempts, which a quiet period gives back', async (t) => {
  const strategy = resolveRestartStrategy({
    type: 'exponential-backoff',
    jitter: 0,
    attempts: 2,
    resetAfterMs: 10_000,
  })
  t.same(delays(failAt(strategy, [0, 1, 2])), [
    100,
    200,
    'gave up: exponential-backoff strategy: 2 restart attempts used',
  ])
  t.same(delays(failAt(strategy, [0, 1, 20_000, 20_001])), [100, 200, 100, 200])
})

t.test('failure-rate - restarts while failures stay within maxFailures per interval', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'failure-rate', delayMs: 10 })
  t.same(delays(failAt(strategy, [0, 1000, 2000])), [10, 10, 10])
})

t.test('failure-rate - gives up on one failure more than maxFailures in the window', async (t) => {
  const strategy = resolveRestartStrategy({ type: 'failure-rate' })
  const decisions = failAt(strategy, [0, 1000, 2000, 299_999])
  t.same(delays(decisions), [
    1000,
    1000,
    1000,
    'gave up: failure-rate strategy: 4 failures within 300000 ms (max 3)',
  ])
})

t.test('failure-rate - the window slides: old failures stop counting', async (t) => {
  const strategy = resolveRestartStrategy({
    type: 'failure-rate',
    maxFailures: 2,
    intervalMs: 1000,
    delayMs: 0,
  })
  // A failure every 500 ms never puts more than two in one window, because a failure exactly
  // intervalMs old has left it.
  const times = [0, 500, 1000, 1500, 2000, 2500, 3000]
  const decisions = failAt(strategy, times)
  t.same(delays(decisions), [0, 0, 0, 0, 0, 0, 0])
  t.same(decisions[6]?.history.recentFailureTimes, [2500, 3000])
  t.same(delays(failAt(strategy, [0, 500, 999])), [
    0,
    0,
    'gave up: failure-rate strategy: 3 failures within 1000 ms (max 2)',
  ])
})

t.test('describe - one line per strategy for the logs', async (t) => {
  t.equal(describeRestartStrategy(resolveRestartStrategy({ type: 'none' })), 'none: never restarts')
  t.equal(
    describeRestartStrategy(resolveRestartStrategy({ type: 'fixed-delay' })),
    'fixed-delay: up to 3 restarts, 1000 ms apart',
  )
  t.equal(
    describeRestartStrategy(resolveRestartStrategy({ type: 'exponential-backoff' })),
    'exponential-backoff: 100 ms x2 up to 60000 ms, jitter ±10%, ' +
      'reset after 3600000 ms without failure, unlimited restarts',
  )
  t.equal(
    describeRestartStrategy(
      resolveRestartStrategy({ type: 'exponential-backoff', resetAfterMs: Infinity, attempts: 1 }),
    ),
    'exponential-backoff: 100 ms x2 up to 60000 ms, jitter ±10%, never reset, up to 1 restart',
  )
  t.equal(
    describeRestartStrategy(resolveRestartStrategy({ type: 'failure-rate' })),
    'failure-rate: up to 3 failures per 300000 ms, 1000 ms apart',
  )
})
