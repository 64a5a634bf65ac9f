/**
 * The final checkpoint (taken when every source ended) holds the final state: a job never
 * reports finished without it, however many checkpoint failures `tolerableFailures` allows. An
 * aborted final checkpoint is tried again; when it keeps failing, the attempt fails and the
 * restart strategy runs the job again from its last completed checkpoint.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { EmbeddedStore, FinalCheckpointError, JobFailedError, startJob } from '../index.ts'
import type { StateChunk } from '../persistence/store.ts'
import { assertFinalState, countingJob, expectedState } from './support/counting.ts'
import { embeddedTestStore, type TestStore } from './support/stores.ts'

/** An embedded store whose chunk writes into the first `slow` snapshots take `delayMs`. */
class SlowStore extends EmbeddedStore {
  readonly #seen: number[] = []
  constructor(
    dir: string,
    private readonly slow: number,
    private readonly delayMs: number,
  ) {
    super({ dir })
  }

  override async writeChunks(job: string, id: number, chunks: readonly StateChunk[]): Promise<number> {
    if (!this.#seen.includes(id)) this.#seen.push(id)
    if (this.#seen.indexOf(id) < this.slow) await new Promise((r) => setTimeout(r, this.delayMs))
    return await super.writeChunks(job, id, chunks)
  }
}

function slowStore(t: Test, slow: number): { ts: TestStore; store: SlowStore } {
  const plain = embeddedTestStore()
  const dir = plain.cliArgs[plain.cliArgs.indexOf('--store-dir') + 1]!
  const store = new SlowStore(dir, slow, 1000)
  t.teardown(async () => {
    await store.close()
    await plain.cleanup()
  })
  return { ts: { ...plain, store }, store }
}


const gen = { records: 5000, keys: 50, seed: 3 }

t.test('final checkpoint - every try times out: not finished, even with 1000 tolerable failures; the restart strategy gives up', async (t) => {
  const { store } = slowStore(t, Infinity)
  const handle = startJob(countingJob({ name: 'final-never', ...gen }), {
    store,
    checkpoints: { intervalMs: 60_000, timeoutMs: 400, tolerableFailures: 1000 },
    restart: { type: 'fixed-delay', attempts: 1, delayMs: 10 },
    logLevel: 'silent',
  })
  const err = await handle.done.then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof JobFailedError, 'the job fails, it does not report finished')
  t.equal((err as JobFailedError).attempts, 2, 'after the one restart the strategy allows')
  const cause = (err as Error).cause
  t.ok(cause instanceof FinalCheckpointError, 'because its final checkpoint never completed')
  t.equal(
    (cause as Error).message,
    'job final-never: the final checkpoint did not complete in 3 tries (last, checkpoint 6: timed out after 400 ms); ' +
      'the job runs again from its last completed checkpoint; if this repeats, raise the checkpoint timeout or check the store',
  )
  t.equal((cause as FinalCheckpointError).retryable, true, 'retryable: the strategy runs the job again')
  const all = await store.listSnapshots('final-never')
  t.same(
    all.map((s) => `${s.id}:${s.status}`),
    ['1:aborted', '2:aborted', '3:aborted', '4:aborted', '5:aborted', '6:aborted'],
    'three tries per attempt, all aborted, none completed',
  )
})

t.test('final checkpoint - two tries time out, the third completes: finished with the exact final state', async (t) => {
  const { ts, store } = slowStore(t, 2)
  const result = await startJob(countingJob({ name: 'final-third', ...gen }), {
    store,
    checkpoints: { intervalMs: 60_000, timeoutMs: 400, tolerableFailures: 5 },
    restart: { type: 'none' },
    logLevel: 'silent',
  }).done
  t.equal(result.status, 'finished')
  t.equal(result.attempts, 1, 'no restart was needed')
  t.equal(result.lastCheckpoint?.id, 3, 'the third try is the final checkpoint')
  t.same((await store.listSnapshots('final-third')).map((s) => `${s.id}:${s.status}`), ['3:completed'], 'the aborted tries are pruned once it completed')
  await assertFinalState(t, ts, 'final-third', expectedState(gen))
})

t.test('final checkpoint - with tolerableFailures 0 an aborted final checkpoint fails the attempt; the restart runs to the end exactly', async (t) => {
  const { ts, store } = slowStore(t, 1)
  const result = await startJob(countingJob({ name: 'final-restart', ...gen }), {
    store,
    checkpoints: { intervalMs: 60_000, timeoutMs: 400 },
    restart: { type: 'fixed-delay', attempts: 1, delayMs: 10 },
    logLevel: 'silent',
  }).done
  t.equal(result.status, 'finished')
  t.equal(result.attempts, 2, 'the first attempt failed on its final checkpoint')
  t.same((await store.listSnapshots('final-restart')).map((s) => `${s.id}:${s.status}`), ['2:completed'], 'the second attempt’s final checkpoint')
  await assertFinalState(t, ts, 'final-restart', expectedState(gen))
})

t.test('final checkpoint - weir run --checkpoint-timeout 1 --tolerable-failures 1000: exit 1 naming the final checkpoint, never "job finished"', async (t) => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const dir = mkdtempSync(join(tmpdir(), 'weir-final-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const args = ['run', join(root, 'examples/payments/job.ts'), '--checkpoint-interval', '60000', '--checkpoint-timeout', '1', '--tolerable-failures', '1000', '--restart', 'none', '--store-dir', join(dir, 'snapshots')]
  const r = spawnSync(process.execPath, [join(root, 'bin/weir.js'), ...args], { encoding: 'utf8', timeout: 30_000 })
  t.equal(r.status, 1, 'the job failed')
  t.match(r.stderr, /JobFailedError: job payments failed after 1 attempts \(none strategy: restarts are disabled\): job payments: the final checkpoint did not complete in 3 tries/)
  t.notMatch(r.stderr, /job finished/)
})
