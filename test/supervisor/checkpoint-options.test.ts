/**
 * Checkpoint options (docs/architecture.md section 6): defaults written once, bad values rejected when the
 * options are resolved, with the dotted name of the option.
 */
import t from 'tap'
import { job, generatorSource, runJob } from '../../index.ts'
import { resolveCheckpointOptions } from '../../supervisor/checkpoint-options.ts'
import { InvalidOptionError, UnknownOptionError } from '../../supervisor/errors.ts'

t.test('checkpoint options - fills in the documented defaults', async (t) => {
  t.same(resolveCheckpointOptions({ intervalMs: 1000 }), {
    intervalMs: 1000,
    mode: 'exactly-once',
    timeoutMs: 60_000,
    minPauseMs: 0,
    maxConcurrent: 1,
    tolerableFailures: 0,
    retained: 2,
  })
})

t.test('checkpoint options - an option set to undefined takes its default', async (t) => {
  const o = resolveCheckpointOptions({ intervalMs: 5, timeoutMs: undefined, mode: undefined, retained: undefined })
  t.equal(o.timeoutMs, 60_000)
  t.equal(o.mode, 'exactly-once')
  t.equal(o.retained, 2)
})

t.test('checkpoint options - keeps every value given', async (t) => {
  const given = { intervalMs: 250, mode: 'at-least-once', timeoutMs: 9_000, minPauseMs: 40, maxConcurrent: 3, tolerableFailures: 2, retained: 5 } as const
  t.same(resolveCheckpointOptions(given), given)
  t.same(resolveCheckpointOptions({ intervalMs: 1, timeoutMs: 1, minPauseMs: 0, maxConcurrent: 1, tolerableFailures: 0, retained: 1 }).intervalMs, 1, 'the smallest allowed values pass')
})

/** [option, bad value] pairs; each must be rejected naming `checkpoints.<option>`. */
const BAD: [string, unknown][] = [
  ['intervalMs', undefined],
  ['intervalMs', 0],
  ['intervalMs', -5],
  ['intervalMs', 1.5],
  ['intervalMs', '1000'],
  ['intervalMs', Number.NaN],
  ['intervalMs', Number.POSITIVE_INFINITY],
  ['mode', 'exactly_once'],
  ['mode', 'unaligned'],
  ['mode', 1],
  ['timeoutMs', 0],
  ['timeoutMs', -1],
  ['timeoutMs', 2.5],
  ['minPauseMs', -1],
  ['minPauseMs', '0'],
  ['maxConcurrent', 0],
  ['maxConcurrent', 1.2],
  ['tolerableFailures', -1],
  ['tolerableFailures', null],
  ['retained', 0],
  ['retained', true],
]

for (const [name, value] of BAD) {
  t.test(`checkpoint options - rejects ${name} = ${String(value)} with InvalidOptionError naming checkpoints.${name}`, async (t) => {
    const options: Record<string, unknown> = name === 'intervalMs' ? { [name]: value } : { intervalMs: 100, [name]: value }
    const err = catchError(() => resolveCheckpointOptions(options))
    t.ok(err instanceof InvalidOptionError, 'an InvalidOptionError')
    t.equal((err as InvalidOptionError).option, `checkpoints.${name}`)
    t.match((err as Error).message, `option checkpoints.${name}: expected`)
    t.equal((err as InvalidOptionError).retryable, false, 'a user’s mistake: retrying cannot help')
  })
}

t.test('checkpoint options - a duration above 2^31-1 ms is rejected, naming the option and the limit', async (t) => {
  // Node fires a timer of more than 2^31-1 ms after 1 ms: such a timeout would abort every checkpoint at once.
  for (const name of ['intervalMs', 'timeoutMs', 'minPauseMs']) {
    const err = catchError(() => resolveCheckpointOptions({ intervalMs: 100, [name]: 1e12 }))
    t.ok(err instanceof InvalidOptionError, `${name}: InvalidOptionError`)
    t.equal(
      (err as Error).message,
      `option checkpoints.${name}: expected an integer number of milliseconds from ${name === 'minPauseMs' ? 0 : 1} to 2147483647 (about 24.8 days, the longest a timer can wait), got 1000000000000`,
    )
  }
  t.equal(resolveCheckpointOptions({ intervalMs: 100, timeoutMs: 2 ** 31 - 1 }).timeoutMs, 2 ** 31 - 1, 'the limit itself is allowed')
})

t.test('checkpoint options - rejects an unknown option with UnknownOptionError naming it', async (t) => {
  const err = catchError(() => resolveCheckpointOptions({ intervalMs: 100, interval: 100 }))
  t.ok(err instanceof UnknownOptionError)
  t.equal((err as UnknownOptionError).option, 'checkpoints.interval')
  t.match((err as Error).message, /unknown option checkpoints\.interval; known options: intervalMs, mode/)
  t.ok((err as UnknownOptionError).known.includes('retained'), 'lists the known names')
})

t.test('checkpoint options - rejects options that are not an object', async (t) => {
  for (const value of [null, 5, 'fast', undefined]) {
    const err = catchError(() => resolveCheckpointOptions(value))
    t.ok(err instanceof InvalidOptionError, `${String(value)}: InvalidOptionError`)
    t.equal((err as InvalidOptionError).option, 'checkpoints')
  }
})

t.test('checkpoint options - runJob rejects bad checkpoint options before running anything', async (t) => {
  const j = job('bad-checkpoints').source('in', generatorSource({ records: 10, keys: 2 })).keyBy((r) => r.key).process('p', {}, () => {}).job
  await t.rejects(runJob(j, { checkpoints: { intervalMs: 0 }, logLevel: 'silent' }), { name: 'InvalidOptionError', option: 'checkpoints.intervalMs' })
  await t.rejects(
    runJob(j, { checkpoints: { intervalMs: 10, retainedCount: 2 } as unknown as { intervalMs: number }, logLevel: 'silent' }),
    { name: 'UnknownOptionError', option: 'checkpoints.retainedCount' },
  )
})

function catchError(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}
