/**
 * A database that stops answering without closing a socket (every server process stopped with
 * SIGSTOP for 30 s) while a job runs: no call waits for ever. Checkpoints time out, the job
 * fails over by its restart strategy, and once the database goes on the job ends, finished,
 * with exactly the expected state.
 */
import t from 'tap'
import { createLogger, PostgresStore, startJob, StoreUnavailableError } from '../index.ts'
import { assertFinalState, countingJob, expectedState } from './support/counting.ts'
import { startThrowawayPostgres, throwawayPostgresMissing } from './support/throwaway-postgres.ts'

const missing = throwawayPostgresMissing()
const FROZEN_MS = 30_000

t.test('frozen database - 30 s of SIGSTOP: checkpoints time out, the job fails over and ends exact after SIGCONT', { skip: missing ?? false, timeout: 90_000 }, async (t) => {
  const pg = await startThrowawayPostgres()
  t.teardown(() => pg.cleanup())
  const gen = { records: 60_000, keys: 300, seed: 17, ratePerSecond: 10_000 }
  const job = () => countingJob({ name: 'frozen-db', ...gen })
  const timeouts = { connectTimeoutMs: 1000, statementTimeoutMs: 1000, queryTimeoutMs: 2000 }
  const store = new PostgresStore({ connectionString: pg.url, ...timeouts })
  const watcher = new PostgresStore({ connectionString: pg.url, ...timeouts })
  await watcher.open()

  const lines: string[] = []
  const logger = createLogger({ level: 'info', write: (line) => lines.push(line) })
  const handle = startJob(job(), {
    store,
    checkpoints: { intervalMs: 200, timeoutMs: 1000, tolerableFailures: 2 },
    restart: { type: 'exponential-backoff', initialMs: 200, maxMs: 2000, attempts: 1000 },
    logger,
    progressIntervalMs: 0,
  })
  // Should an assertion throw midway, the job must not go on restarting after the test.
  t.teardown(() => handle.cancel())
  let latest = 0
  while (latest < 2) {
    await new Promise((r) => setTimeout(r, 50))
    latest = (await watcher.latestCompleted('frozen-db'))?.id ?? 0
  }
  await watcher.close()

  pg.freeze()
  const frozenAt = performance.now()
  let settledWhileFrozen = false
  void handle.done.finally(() => (settledWhileFrozen = performance.now() - frozenAt < FROZEN_MS))
  await new Promise((r) => setTimeout(r, FROZEN_MS))
  const during = lines.slice()
  pg.thaw()
  const thawedAt = performance.now()

  const result = await handle.done
  const afterThawMs = performance.now() - thawedAt
  t.equal(result.status, 'finished', 'the job finished')
  t.notOk(settledWhileFrozen, 'it did not end while the database was frozen')
  t.ok(during.some((l) => / WARN .*checkpoint failed .*timed out after 1000 ms/.test(l)), 'checkpoints timed out while the database was frozen')
  t.ok(during.some((l) => / ERROR .*attempt failed/.test(l)), 'and the job failed over by its strategy')
  t.ok(
    during.some((l) => /StoreUnavailableError|is unavailable: (no answer to a statement within queryTimeoutMs \(2000 ms\)|cannot connect)/.test(l)),
    'store calls ended with StoreUnavailableError at their deadline, not a hang',
  )
  t.ok(result.attempts > 1, `failed over at least once (${result.attempts} attempts)`)
  t.ok(afterThawMs < 20_000, `ended within 20 s of the database going on (${Math.round(afterThawMs)} ms)`)
  t.ok(result.lastCheckpoint !== undefined && result.lastCheckpoint.id > latest, 'a final checkpoint completed after the freeze')
  await store.close()

  const again = new PostgresStore({ connectionString: pg.url })
  t.teardown(() => again.close())
  await again.open()
  t.equal((await again.latestCompleted('frozen-db'))?.id, result.lastCheckpoint?.id, 'the final checkpoint is the newest completed one')
  await assertFinalState(t, { kind: 'postgres', store: again, cliArgs: [], cleanup: async () => {} }, 'frozen-db', expectedState(gen))
})

t.test('frozen database - a store call on an open connection ends at queryTimeoutMs with StoreUnavailableError; the store works after SIGCONT', { skip: missing ?? false }, async (t) => {
  const pg = await startThrowawayPostgres()
  t.teardown(() => pg.cleanup())
  const store = new PostgresStore({ connectionString: pg.url, connectTimeoutMs: 1000, statementTimeoutMs: 500, queryTimeoutMs: 1000 })
  t.teardown(() => store.close())
  await store.open()
  pg.freeze()
  const began = performance.now()
  const err = await store.listSnapshots('frozen').catch((e: unknown) => e)
  const waited = performance.now() - began
  pg.thaw()
  t.ok(err instanceof StoreUnavailableError, 'a StoreUnavailableError')
  t.equal((err as StoreUnavailableError).retryable, true, 'retryable')
  t.equal(
    (err as Error).message,
    `snapshot store 127.0.0.1:${pg.port}/postgres is unavailable: no answer to a statement within queryTimeoutMs (1000 ms); ` +
      `check that Postgres at 127.0.0.1:${pg.port}/postgres is running and not overloaded or stopped; the call may be retried`,
  )
  t.ok(waited >= 990 && waited < 3000, `at the deadline, not later (${Math.round(waited)} ms)`)
  t.same(await store.listSnapshots('frozen'), [], 'after SIGCONT the store answers again (the dropped connection was not reused)')
})
