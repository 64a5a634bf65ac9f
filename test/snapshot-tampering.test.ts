/**
 * A snapshot proves it is whole: after a completed checkpoint, the store is tampered with (a
 * source offset removed, a key group removed or moved, a bogus completed mark, a corrupt header)
 * and the next restore must fail with a `CorruptSnapshotError` naming what is wrong, or fall back
 * to the older good snapshot and end with exact state; never restore partial state. Both stores.
 */
import { spawnSync } from 'node:child_process'
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { Test } from 'tap'
import { CorruptSnapshotError, createLogger, runJob, type SnapshotInfo } from '../index.ts'
import { decodeBatch, encodeBatch } from '../persistence/embedded-batch.ts'
import { KEYED_CHUNK_FORMAT } from '../persistence/keyed-chunk.ts'
import type { StateChunk } from '../persistence/store.ts'
import { assertFinalState, countingJob, expectedState } from './support/counting.ts'
import { pgClient, testStores, type TestStore } from './support/stores.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const FIRST = 2_000
const gen = { keys: 40, seed: 5 }

interface Prepared {
  job: string
  /** Completed with the state of the first FIRST records. */
  older: SnapshotInfo
  /** Completed with the state of all 2 * FIRST records: the one tampered with. */
  newer: SnapshotInfo
}

/** Two completed snapshots: the first run counts FIRST records, the second (restored) twice as many. */
async function prepare(t: Test, ts: TestStore, job: string): Promise<Prepared> {
  const quiet = { store: ts.store, logLevel: 'silent' as const, checkpoints: { intervalMs: 60_000 } }
  await runJob(countingJob({ name: job, records: FIRST, ...gen }), quiet)
  await runJob(countingJob({ name: job, records: 2 * FIRST, ...gen }), { ...quiet, restore: 'latest' })
  const completed = (await ts.store.listSnapshots(job)).filter((s) => s.status === 'completed')
  t.equal(completed.length, 2, 'two completed snapshots to start from')
  return { job, older: completed[0]!, newer: completed[1]! }
}

/** Runs the job over all 2 * FIRST records with `restore`, noting the records it counts and what it logs. */
async function rerun(ts: TestStore, job: string, restore: 'latest' | number) {
  const seqs: number[] = []
  const lines: string[] = []
  const j = countingJob({ name: job, records: 2 * FIRST, ...gen, before: (seq) => void seqs.push(seq) })
  const outcome = await runJob(j, {
    store: ts.store,
    restore,
    checkpoints: { intervalMs: 60_000 },
    restart: { type: 'none' },
    logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }),
  }).then(
    (result) => ({ result, error: undefined }),
    (error: unknown) => ({ result: undefined, error }),
  )
  return { ...outcome, seqs, lines }
}

/** Restoring the tampered snapshot by id fails, naming it and exactly the problems; nothing is restored or written. */
async function assertRefused(t: Test, ts: TestStore, p: Prepared, id: number, problems: (string | RegExp)[]): Promise<void> {
  const before = await ts.store.listSnapshots(p.job)
  const run = await rerun(ts, p.job, id)
  t.type(run.error, CorruptSnapshotError, 'restore by id fails with CorruptSnapshotError')
  const err = run.error as CorruptSnapshotError
  t.equal(err.snapshotId, id)
  t.equal(err.job, p.job)
  t.equal(err.retryable, false, 'terminal')
  t.equal(err.problems.length, problems.length, `the problems: ${JSON.stringify(err.problems)}`)
  problems.forEach((want, i) => (typeof want === 'string' ? t.equal(err.problems[i], want) : t.match(err.problems[i], want)))
  t.match(err.message, new RegExp(`^snapshot ${id} of job '${p.job}' is corrupt: `))
  t.equal(run.seqs.length, 0, 'no record was processed')
  t.same(await ts.store.listSnapshots(p.job), before, 'nothing changed in the store')
}

/** `restore: 'latest'` skips the tampered snapshot with a warning and ends exact from the older one. */
async function assertFallback(t: Test, ts: TestStore, p: Prepared, skipped: number | undefined): Promise<void> {
  const run = await rerun(ts, p.job, 'latest')
  t.equal(run.error, undefined, 'the job finishes')
  t.equal(run.result?.status, 'finished')
  if (skipped !== undefined) {
    const warning = run.lines.find((l) => l.includes(`skipping snapshot ${skipped}: it fails verification`))
    t.ok(warning, 'a warning names the snapshot skipped', { lines: run.lines })
    t.match(warning, /is corrupt: /, 'and says why')
  }
  t.same(
    [Math.min(...run.seqs), run.seqs.length],
    [FIRST, FIRST],
    'restored from the older snapshot: exactly the records after it were counted again',
  )
  await assertFinalState(t, ts, p.job, expectedState({ records: 2 * FIRST, ...gen }))
}

// ---- tampering helpers, one per store

function embeddedDir(ts: TestStore, p: Prepared, id: number): string {
  return join(ts.cliArgs[3]!, p.job, String(id))
}

/** Rewrites the embedded batch files of a snapshot through `edit`, with valid entry checksums. */
async function editBatches(ts: TestStore, p: Prepared, id: number, edit: (chunks: StateChunk[]) => StateChunk[]): Promise<void> {
  const dir = embeddedDir(ts, p, id)
  for (const file of (await readdir(dir)).filter((f) => f.startsWith('chunks-'))) {
    const path = join(dir, file)
    const entries = decodeBatch(await readFile(path), { job: p.job, snapshotId: id, file: path })
    const chunks = entries.map(({ operatorUid, kind, index, format, data }) => ({ operatorUid, kind, index, format, data }))
    await writeFile(path, encodeBatch(edit(chunks)))
  }
}

async function sql(ts: TestStore, text: string, params: unknown[]): Promise<number> {
  const schema = ts.cliArgs[3]!
  const c = await pgClient()
  try {
    await c.query(`SET search_path TO "${schema}"`)
    return (await c.query(text, params)).rowCount ?? 0
  } finally {
    await c.end()
  }
}

/** A key group that holds keys in the newer snapshot, and an empty one. */
async function keyGroups(t: Test, ts: TestStore, p: Prepared): Promise<{ full: number; other: number }> {
  const chunks = await ts.store.readChunks(p.job, p.newer.id, { operatorUid: 'count', kind: 'keyed' })
  t.same(
    chunks.map((c) => c.index),
    Array.from({ length: 64 }, (_, i) => i),
    'every key group of the keyed operator is in the snapshot, empty ones included',
  )
  const full = chunks.find((c) => c.data.byteLength > 0)!.index
  const other = chunks.find((c) => c.data.byteLength === 0)!.index
  return { full, other }
}

for (const { name, make } of testStores) {
  const fixture = async (t: Test, what: string): Promise<{ ts: TestStore; p: Prepared }> => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    await ts.store.open()
    return { ts, p: await prepare(t, ts, `tamper-${what}-${name}`) }
  }

  t.test(`manifest (${name}) - a removed source offset chunk is refused, and 'latest' falls back to the older snapshot`, async (t) => {
    const { ts, p } = await fixture(t, 'offset')
    if (ts.kind === 'postgres') {
      t.equal(await sql(ts, `DELETE FROM state_chunks WHERE job = $1 AND snapshot_id = $2 AND kind = 'operator' AND idx = 0`, [p.job, p.newer.id]), 1)
    } else {
      await editBatches(ts, p, p.newer.id, (cs) => cs.filter((c) => !(c.kind === 'operator' && c.index === 0)))
    }
    await assertRefused(t, ts, p, p.newer.id, ["operator chunk (instance 0) of operator 'in' is missing"])
    await assertFallback(t, ts, p, p.newer.id)
  })

  t.test(`manifest (${name}) - a removed key group chunk is refused, and 'latest' falls back to the older snapshot`, async (t) => {
    const { ts, p } = await fixture(t, 'keyed')
    const { full } = await keyGroups(t, ts, p)
    if (ts.kind === 'postgres') {
      t.equal(await sql(ts, `DELETE FROM state_chunks WHERE job = $1 AND snapshot_id = $2 AND kind = 'keyed' AND idx = $3`, [p.job, p.newer.id, full]), 1)
    } else {
      await editBatches(ts, p, p.newer.id, (cs) => cs.filter((c) => !(c.kind === 'keyed' && c.index === full)))
    }
    await assertRefused(t, ts, p, p.newer.id, [`keyed chunk (key group ${full}) of operator 'count' is missing`])
    await assertFallback(t, ts, p, p.newer.id)
  })

  t.test(`manifest (${name}) - a key group chunk moved to another key group is refused, and 'latest' falls back`, async (t) => {
    const { ts, p } = await fixture(t, 'moved')
    const { full, other } = await keyGroups(t, ts, p)
    let moved: string
    if (ts.kind === 'postgres') {
      const where = `job = $1 AND snapshot_id = $2 AND kind = 'keyed'`
      t.equal(await sql(ts, `DELETE FROM state_chunks WHERE ${where} AND idx = $3`, [p.job, p.newer.id, other]), 1)
      t.equal(await sql(ts, `UPDATE state_chunks SET idx = $3 WHERE ${where} AND idx = $4`, [p.job, p.newer.id, other, full]), 1)
      moved = `keyed chunk (key group ${other}) of operator 'count' holds the chunk listed as keyed chunk (key group ${full}) of operator 'count' (moved)`
    } else {
      // A valid entry checksum for the new address: only the manifest can tell.
      await editBatches(ts, p, p.newer.id, (cs) =>
        cs.filter((c) => !(c.kind === 'keyed' && c.index === other)).map((c) => (c.kind === 'keyed' && c.index === full ? { ...c, index: other } : c)),
      )
      moved = `keyed chunk (key group ${other}) of operator 'count' was changed (manifest: 0 bytes, format ${KEYED_CHUNK_FORMAT}; stored: `
    }
    const refused = await rerun(ts, p.job, p.newer.id)
    t.type(refused.error, CorruptSnapshotError)
    const problems = (refused.error as CorruptSnapshotError).problems
    t.equal(problems.length, 2, JSON.stringify(problems))
    const movedProblem = problems.find((x) => x.includes(`key group ${other})`))
    t.ok(movedProblem?.startsWith(moved), `names the moved chunk: ${movedProblem}`)
    t.ok(problems.includes(`keyed chunk (key group ${full}) of operator 'count' is missing`), 'names the key group it left')
    t.equal(refused.seqs.length, 0, 'no record was processed')
    await assertFallback(t, ts, p, p.newer.id)
  })

  t.test(`manifest (${name}) - a bogus completed snapshot with no chunks is refused, and 'latest' skips it`, async (t) => {
    const { ts, p } = await fixture(t, 'bogus')
    const id = p.newer.id + 1
    if (ts.kind === 'postgres') {
      await sql(
        ts,
        `INSERT INTO snapshots (job, id, kind, status, attempt, layout, triggered_at, completed_at, size_bytes)
         SELECT job, $2, kind, 'completed', attempt, layout, triggered_at, completed_at, 0 FROM snapshots WHERE job = $1 AND id = $3`,
        [p.job, id, p.newer.id],
      )
    } else {
      await mkdir(embeddedDir(ts, p, id))
      const info = { ...p.newer, id, sizeBytes: 0 }
      await writeFile(join(embeddedDir(ts, p, id), 'snapshot.json'), JSON.stringify({ format: 2, info, batches: [] }))
    }
    t.equal((await ts.store.latestCompleted(p.job))?.id, id, 'the bogus snapshot looks like the latest completed one')
    await assertRefused(t, ts, p, id, [/^it has no manifest /])
    // The newer snapshot is good: the fallback restores it, and nothing is left to count.
    const run = await rerun(ts, p.job, 'latest')
    t.equal(run.result?.status, 'finished')
    t.ok(run.lines.some((l) => l.includes(`skipping snapshot ${id}: it fails verification`)), 'a warning names the bogus snapshot')
    t.equal(run.seqs.length, 0, 'restored from the newest good snapshot, which holds every record')
    await assertFinalState(t, ts, p.job, expectedState({ records: 2 * FIRST, ...gen }))
  })

  t.test(`manifest (${name}) - a corrupt header or manifest hides no other snapshot and never blocks a fresh start`, async (t) => {
    const { ts, p } = await fixture(t, 'header')
    let problem: RegExp
    if (ts.kind === 'postgres') {
      t.equal(await sql(ts, `UPDATE snapshot_manifests SET manifest = manifest || ' ' WHERE job = $1 AND snapshot_id = $2`, [p.job, p.newer.id]), 1)
      problem = /^its manifest does not match its checksum$/
      t.same((await ts.store.listSnapshots(p.job)).map((s) => s.id), [p.older.id, p.newer.id], 'listing is unaffected')
      await assertRefused(t, ts, p, p.newer.id, [problem])
      await assertFallback(t, ts, p, p.newer.id)
    } else {
      await writeFile(join(embeddedDir(ts, p, p.newer.id), 'snapshot.json'), '{"format": 2, "info": {"job": "tru')
      t.same((await ts.store.listSnapshots(p.job)).map((s) => s.id), [p.older.id], 'the unreadable header is left out of the listing; the other is listed')
      const listed = spawnSync(process.execPath, ['bin/weir.js', 'snapshots', p.job, ...ts.cliArgs], { cwd: root, encoding: 'utf8', timeout: 60_000 })
      t.equal(listed.status, 0, '`weir snapshots` exits 0')
      t.same(listed.stdout.trim().split('\n').map((l) => l.split('\t').slice(0, 3)), [[String(p.older.id), 'checkpoint', 'completed']], 'and lists the readable snapshot')
      const err = await ts.store.getSnapshot(p.job, p.newer.id).then(
        () => undefined,
        (e: unknown) => e,
      )
      t.type(err, CorruptSnapshotError)
      t.match((err as Error).message, new RegExp(`^snapshot ${p.newer.id} of job '${p.job}' is corrupt: its header .*snapshot\\.json is not valid JSON`))
      const byId = await rerun(ts, p.job, p.newer.id)
      t.type(byId.error, CorruptSnapshotError, 'restore by id names the unreadable header')
      t.equal(byId.seqs.length, 0)
      await assertFallback(t, ts, p, undefined)
      // Wrong content that is valid JSON is treated the same.
      await writeFile(join(embeddedDir(ts, p, p.newer.id), 'snapshot.json'), JSON.stringify({ format: 2, info: { job: 'another', id: 1 } }))
      t.notOk((await ts.store.listSnapshots(p.job)).some((s) => s.id === p.newer.id), 'a header of another snapshot is left out too')
    }
    const fresh = await runJob(countingJob({ name: p.job, records: 500, ...gen }), { store: ts.store, restore: 'none', logLevel: 'silent', checkpoints: { intervalMs: 60_000 } })
    t.equal(fresh.status, 'finished', "restore: 'none' starts fresh")
    await assertFinalState(t, ts, p.job, expectedState({ records: 500, ...gen }))
  })
}

for (const { name, make } of testStores) {
  t.test(`manifest (${name}) - keys in the wrong key group are refused on restore, even under a valid manifest`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    await ts.store.open()
    const p = await prepare(t, ts, `tamper-forged-${name}`)
    const { full, other } = await keyGroups(t, ts, p)
    // A snapshot written through the store, so its manifest is valid: key group `full`'s keys are
    // stored as key group `other`.
    const id = p.newer.id + 1
    const original = await ts.store.readChunks(p.job, p.newer.id)
    const fullData = original.find((c) => c.operatorUid === 'count' && c.index === full)!.data
    const chunks = original.map((c) => {
      if (c.operatorUid !== 'count') return c
      if (c.index === other) return { ...c, data: fullData }
      if (c.index === full) return { ...c, data: new Uint8Array(0) }
      return c
    })
    const lease = await ts.store.acquireLease(p.job)
    await ts.store.beginSnapshot({ job: p.job, id, kind: 'checkpoint', attempt: 9, layout: p.newer.layout, triggeredAt: Date.now() })
    await ts.store.writeChunks(p.job, id, chunks)
    await ts.store.completeSnapshot(p.job, id, { completedAt: Date.now(), durationMs: 1 })
    await lease.release()
    await ts.store.verifySnapshot(p.job, id)
    const run = await rerun(ts, p.job, id)
    t.type(run.error, CorruptSnapshotError)
    const err = run.error as CorruptSnapshotError
    t.equal(err.problems.length, 1)
    t.match(err.problems[0], new RegExp(`^keyed chunk \\(key group ${other}\\) of operator 'count' holds key "k\\d+" of key group ${full} \\(moved\\)$`))
    t.equal(run.seqs.length, 0, 'no record was processed')

    // 'latest' skips it once loading finds the misplaced key, for the good snapshot before it.
    const latest = await rerun(ts, p.job, 'latest')
    t.equal(latest.result?.status, 'finished')
    t.ok(latest.lines.some((l) => l.includes(`skipping snapshot ${id}: it cannot be restored`)), 'a warning names the snapshot skipped', { lines: latest.lines })
    t.equal(latest.seqs.length, 0, 'restored from the good snapshot, which holds every record')
    await assertFinalState(t, ts, p.job, expectedState({ records: 2 * FIRST, ...gen }))
  })
}
