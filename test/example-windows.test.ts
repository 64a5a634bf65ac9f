/**
 * The windows example works as written: `weir run examples/daily-totals/job.ts` finishes and
 * prints exactly one total per account and day, equal to the sum of that day's payments.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { generatedRecord } from '../index.ts'

const root = fileURLToPath(new URL('..', import.meta.url))

t.test('example - daily-totals prints one exact total per account and day', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-example-windows-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const run = spawnSync(process.execPath, ['bin/weir.js', 'run', 'examples/daily-totals/job.ts', '--checkpoint-interval', '200', '--store-dir', dir], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  t.equal(run.status, 0, 'exits 0', { stderr: run.stderr.slice(-2000) })
  t.match(run.stderr, /job finished job=daily-totals/)
  const got = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { account: string; day: string; cents: number })
  // The example's event time, written out again: every 10 s from 2026-11-01, up to 2 minutes off.
  const start = Date.UTC(2026, 10, 1)
  const expected = new Map<string, number>()
  for (let seq = 0; seq < 100_000; seq++) {
    const r = generatedRecord({ keys: 20, seed: 11 }, seq)
    const time = start + seq * 10_000 + ((r.value * 7_919) % 240_001) - 120_000
    const id = `acct-${r.key.slice(1)} ${new Date(time).toISOString().slice(0, 10)}`
    expected.set(id, (expected.get(id) ?? 0) + r.value * 100)
  }
  t.equal(got.length, expected.size, 'one line per account and day')
  t.same(new Map(got.map((g) => [`${g.account} ${g.day}`, g.cents])), expected, 'each the sum of its payments')
})
