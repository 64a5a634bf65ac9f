/**
 * Exactly-once state under failure: user code that throws at random records, with a restart
 * strategy, must end with exactly the state of a run that never failed. Both stores.
 */
import t from 'tap'
import { createLogger, JobFailedError, runJob, UserCodeError } from '../index.ts'
import { assertFinalState, countingJob, expectedState } from './support/counting.ts'
import { recordsLeftAfter } from './support/kill-runs.ts'
import { testStores } from './support/stores.ts'

/** A small seeded PRNG, so a failing run can be repeated. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

for (const { name, make } of testStores) {
  t.test(`exactly-once (${name}) - user code throwing at random records is recovered to exact state`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const seed = Number(process.env.WEIR_TEST_SEED ?? Date.now() % 100_000)
    t.comment(`seed ${seed}`)
    const random = prng(seed)
    const gen = { records: 150_000, keys: 2_000, seed: 11 }
    // Four failures at random positions of the sequence; each throws once, like a transient fault.
    const failAt = new Set(Array.from({ length: 4 }, () => Math.floor(random() * gen.records)))
    const thrown: number[] = []
    const j = countingJob({
      name: `eo-${name}`,
      ...gen,
      before: (seq) => {
        if (failAt.delete(seq)) {
          thrown.push(seq)
          throw new Error(`injected failure at record ${seq}`)
        }
      },
    })
    const lines: string[] = []
    const result = await runJob(j, {
      logger: createLogger({ level: (process.env.WEIR_TEST_LOG as 'debug' | undefined) ?? 'warn', write: (l) => (process.env.WEIR_TEST_LOG ? process.stderr.write(l + '\n') : lines.push(l)) }),
      store: ts.store,
      // Every checkpoint kept, so the one the last attempt restored can be read afterwards.
      checkpoints: { intervalMs: 10, retained: 100_000 },
      restart: { type: 'fixed-delay', attempts: 10, delayMs: 5 },
      tuning: { sliceMs: 2 },
    })
    t.equal(result.status, 'finished')
    t.ok(result.restoredFrom !== undefined, `the last attempt restored a checkpoint (${result.restoredFrom})`)
    const left = await recordsLeftAfter(ts.store, `eo-${name}`, result.restoredFrom!, 'in', gen.records)
    t.ok(left < gen.records, `taken part-way through the input (${left} records after it)`)
    t.equal(result.records['in'], left, 'the last attempt read the records after its offsets, not the input from its start')
    t.equal(thrown.length, 4, 'every injected failure fired')
    t.equal(result.attempts, 5, 'one restart per failure', { lines })
    t.ok(result.checkpointsCompleted >= 2, `checkpoints completed (${result.checkpointsCompleted})`)
    await assertFinalState(t, ts, `eo-${name}`, expectedState(gen))
  })

  t.test(`exactly-once (${name}) - the job fails with the user's error once the strategy gives up`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const j = countingJob({
      name: `eo-give-up-${name}`,
      records: 10_000,
      keys: 10,
      before: (seq) => {
        if (seq === 5_000) throw new Error('always broken')
      },
    })
    const err = await runJob(j, { store: ts.store, checkpoints: { intervalMs: 5 }, restart: { type: 'fixed-delay', attempts: 2, delayMs: 1 }, logLevel: 'silent' }).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(err instanceof JobFailedError, 'fails with a JobFailedError')
    t.ok((err as Error).cause instanceof UserCodeError, 'caused by the user code error')
    t.match((err as Error).message, /job eo-give-up-\w+ failed after 3 attempts \(fixed-delay strategy: 2 restart attempts used\)/)
    t.match((err as Error).message, /operator count\[\d\] key "k\d+": user code threw: always broken/)
  })
}
