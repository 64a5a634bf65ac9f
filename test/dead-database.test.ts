/**
 * A database that dies while the job runs: the job fails with an error that names the store,
 * after its restart strategy; the completed checkpoints survive; once the database is back,
 * `restore: 'latest'` ends with exactly the expected state.
 */
import t from 'tap'
import { PostgresStore, startJob, StoreUnavailableError } from '../index.ts'
import { assertFinalState, countingJob, expectedState } from './support/counting.ts'
import { RESTORE_OFF, faultTest, type FaultBody } from './support/controls.ts'
import { recordsLeftAfter } from './support/kill-runs.ts'
import { startThrowawayPostgres, throwawayPostgresMissing } from './support/throwaway-postgres.ts'

const missing = throwawayPostgresMissing()

const body: FaultBody = async (t, mutation) => {
  const pg = await startThrowawayPostgres()
  t.teardown(() => pg.cleanup())
  const gen = { records: 80_000, keys: 400, seed: 9, ratePerSecond: 20_000 }
  const job = () => countingJob({ name: 'dead-db', ...gen })
  const store = new PostgresStore({ connectionString: pg.url, connectTimeoutMs: 1000 })
  const watcher = new PostgresStore({ connectionString: pg.url, connectTimeoutMs: 1000 })
  await watcher.open()

  const handle = startJob(job(), { store, checkpoints: { intervalMs: 100 }, restart: { type: 'fixed-delay', attempts: 2, delayMs: 200 }, logLevel: 'silent' })
  let latest = 0
  while (latest < 3) {
    await new Promise((r) => setTimeout(r, 50))
    latest = (await watcher.latestCompleted('dead-db'))?.id ?? 0
  }
  await watcher.close()
  pg.kill()
  const err = await handle.done.then(
    () => undefined,
    (e: unknown) => e as Error,
  )
  t.ok(err instanceof Error, 'the job fails')
  const chain: unknown[] = []
  for (let e: unknown = err; e instanceof Error; e = e.cause) chain.push(e)
  t.ok(
    chain.some((e) => e instanceof StoreUnavailableError),
    `a StoreUnavailableError is the failure or its cause: ${chain.map((e) => (e as Error).message).join(' <- ')}`,
  )
  t.match(chain.map((e) => (e as Error).message).join('\n'), `127.0.0.1:${pg.port}`, 'the message names the database')
  await store.close()

  pg.start()
  const again = new PostgresStore({ connectionString: pg.url })
  t.teardown(() => again.close())
  await again.open()
  const before = await again.latestCompleted('dead-db')
  t.ok(before !== undefined && before.id >= latest, `the checkpoints completed before the crash are still there (latest ${before?.id})`)
  const left = await recordsLeftAfter(again, 'dead-db', before!.id, 'in', gen.records)
  const result = await startJob(job(), { store: again, checkpoints: { intervalMs: 100 }, restore: mutation?.restore ?? 'latest', logLevel: 'silent' }).done
  t.equal(result.status, 'finished')
  t.equal(result.restoredFrom, before?.id, `the run after the crash restored the latest checkpoint, ${before?.id}`)
  t.equal(result.records['in'], left, `and read the ${left} records after its offset`)
  await assertFinalState(t, { kind: 'postgres', store: again, cliArgs: [], cleanup: async () => {} }, 'dead-db', expectedState(gen))
}

const title = 'dead database - Postgres killed mid-run: clear failure, nothing completed is lost, restore finishes exactly'
if (missing !== undefined) t.test(title, { skip: missing }, () => {})
else faultTest(t, title, body, [{ mutation: RESTORE_OFF, because: /restored the latest checkpoint/ }])
