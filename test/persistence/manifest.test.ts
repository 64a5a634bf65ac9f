/**
 * The manifest logic on its own (persistence/manifest.ts), and snapshots written before manifests:
 * still readable, never restored.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { checksum } from '../../persistence/checksum.ts'
import { CorruptSnapshotError } from '../../persistence/errors.ts'
import { buildManifest, requiredAddresses, verifyManifest, type ManifestEntry } from '../../persistence/manifest.ts'
import type { SnapshotLayout } from '../../persistence/store.ts'
import { pgClient, testStores } from '../support/stores.ts'

const layout: SnapshotLayout = {
  maxParallelism: 4,
  operators: [
    { uid: 'in', parallelism: 2, chunks: ['operator'] },
    { uid: 'count', parallelism: 3, chunks: ['keyed'] },
    { uid: 'out', parallelism: 1 },
  ],
}

function entry(operatorUid: string, kind: 'keyed' | 'operator', index: number, size = 10): ManifestEntry {
  return { operatorUid, kind, index, format: 1, size, checksum: `sum-${operatorUid}-${kind}-${index}` }
}

const all = (): ManifestEntry[] => [entry('in', 'operator', 0), entry('in', 'operator', 1), ...[0, 1, 2, 3].map((i) => entry('count', 'keyed', i, i))]

function problemsOf(fn: () => void): readonly string[] | undefined {
  try {
    fn()
  } catch (err) {
    if (err instanceof CorruptSnapshotError) return err.problems
    throw err
  }
  return undefined
}

t.test('manifest - the required addresses are every key group of keyed kinds and every instance of the others', async (t) => {
  t.same(
    requiredAddresses(layout).map((a) => `${a.operatorUid}/${a.kind}/${a.index}`),
    ['in/operator/0', 'in/operator/1', 'count/keyed/0', 'count/keyed/1', 'count/keyed/2', 'count/keyed/3'],
  )
})

t.test('manifest - what was written verifies against the manifest built from it, in any order', async (t) => {
  const m = buildManifest('j', 7, layout, all())
  t.equal(problemsOf(() => verifyManifest('j', 7, m, all().reverse())), undefined)
  t.equal(m.checksum, checksum(Buffer.from(m.text, 'utf8')))
})

t.test('manifest - each kind of damage is named', async (t) => {
  const m = buildManifest('j', 7, layout, all())
  t.same(problemsOf(() => verifyManifest('j', 7, undefined, all())), [
    'it has no manifest (its completed mark was not written by Weir, or by a Weir older than manifests)',
  ])
  t.same(problemsOf(() => verifyManifest('j', 7, { ...m, text: m.text.replace('"j"', '"k"') }, all())), ['its manifest does not match its checksum'])
  const other = buildManifest('j', 6, layout, all())
  t.same(problemsOf(() => verifyManifest('j', 7, other, all())), ["its manifest is that of snapshot 6 of job 'j'"])
  const bad = { text: '{"version":1', checksum: checksum(Buffer.from('{"version":1', 'utf8')) }
  t.same(problemsOf(() => verifyManifest('j', 7, bad, all())), ['its manifest cannot be read'])
  const held = all()
  held[2] = { ...held[2]!, size: 99, checksum: 'other' } // count/keyed/0 changed
  held.push(entry('count', 'keyed', 1, 1)) // stored twice
  held.push(entry('count', 'keyed', 9)) // not listed
  held.splice(1, 1) // in/operator/1 gone
  t.same(problemsOf(() => verifyManifest('j', 7, m, held)), [
    "keyed chunk (key group 0) of operator 'count' was changed (manifest: 0 bytes, format 1; stored: 99 bytes, format 1, another checksum)",
    "keyed chunk (key group 1) of operator 'count' is stored twice",
    "keyed chunk (key group 9) of operator 'count' is not in the manifest",
    "operator chunk (instance 1) of operator 'in' is missing",
  ])
})

t.test('manifest - a chunk under another address is named as moved', async (t) => {
  const m = buildManifest('j', 7, layout, all())
  const held = all().filter((e) => !(e.kind === 'keyed' && e.index === 3))
  held[held.findIndex((e) => e.kind === 'keyed' && e.index === 1)] = { ...entry('count', 'keyed', 3, 3), index: 1 }
  t.same(problemsOf(() => verifyManifest('j', 7, m, held)), [
    "keyed chunk (key group 1) of operator 'count' holds the chunk listed as keyed chunk (key group 3) of operator 'count' (moved)",
    "keyed chunk (key group 3) of operator 'count' is missing",
  ])
})

for (const { name, make } of testStores) {
  t.test(`manifest (${name}) - a snapshot completed before manifests is still readable but never verifies`, async (t) => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    const { store } = ts
    await store.open()
    const data = new Uint8Array([1, 2, 3])
    const lease = await store.acquireLease('old')
    t.teardown(() => lease.release())
    await store.beginSnapshot({ job: 'old', id: 1, kind: 'checkpoint', attempt: 0, layout: { maxParallelism: 4, operators: [{ uid: 'count', parallelism: 1 }] }, triggeredAt: 1 })
    await store.writeChunks('old', 1, [{ operatorUid: 'count', kind: 'keyed', index: 2, format: 1, data }])
    await store.completeSnapshot('old', 1, { completedAt: 2, durationMs: 1 })
    // Turn it into what an older Weir left: no manifest; in Postgres a checksum of the data alone.
    if (ts.kind === 'postgres') {
      const c = await pgClient()
      const schema = `"${ts.cliArgs[3]!}"`
      await c.query(`DELETE FROM ${schema}.snapshot_manifests`)
      await c.query(`UPDATE ${schema}.state_chunks SET checksum = $1, checksum_scope = 'data'`, [checksum(data)])
      await c.end()
    } else {
      const header = join(ts.cliArgs[3]!, 'old', '1', 'snapshot.json')
      const parsed = JSON.parse(await readFile(header, 'utf8')) as { manifest?: unknown; format: number }
      delete parsed.manifest
      parsed.format = 1
      await writeFile(header, JSON.stringify(parsed))
    }
    t.same([...(await store.readChunks('old', 1))[0]!.data], [1, 2, 3], 'its chunks read back')
    const err = await store.verifySnapshot('old', 1).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.type(err, CorruptSnapshotError)
    t.match((err as Error).message, /^snapshot 1 of job 'old' is corrupt: it has no manifest /)
  })
}
