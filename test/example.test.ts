/**
 * The README's example works as written: `weir run examples/payments/job.ts` finishes, prints
 * account reports, and `weir state` / `weir snapshots` read the exact totals back.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { generatedRecord } from '../index.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const weir = (args: string[]) => spawnSync(process.execPath, ['bin/weir.js', ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 })

t.test('example - payments runs to the end and its state holds the exact totals', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-example-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const run = weir(['run', 'examples/payments/job.ts', '--checkpoint-interval', '500', '--store-dir', dir])
  t.equal(run.status, 0, 'exits 0')
  t.match(run.stderr, /checkpoint completed checkpoint=\d+ durationMs=\d+ bytes=\d+/)
  t.match(run.stderr, /instance -> finished instance=totals\[1\]/)
  t.match(run.stderr, /job finished job=payments/)
  const reports = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { account: string; payments: number })
  t.ok(reports.length > 0 && reports.every((r) => r.payments % 1000 === 0), 'reports every 1000 payments of an account')

  const expected = new Map<string, number>()
  for (let seq = 0; seq < 200_000; seq++) {
    const r = generatedRecord({ keys: 50, seed: 7 }, seq)
    const account = `acct-${r.key.slice(1)}`
    expected.set(account, (expected.get(account) ?? 0) + r.value * 100)
  }
  const state = weir(['state', 'payments', 'totals', 'total', '--store-dir', dir])
  t.equal(state.status, 0)
  const totals = new Map(state.stdout.trim().split('\n').map((l) => {
    const { key, value } = JSON.parse(l) as { key: string; value: number }
    return [key, value] as const
  }))
  t.same(totals, expected, 'every account total is exact')

  const list = weir(['snapshots', 'payments', '--store-dir', dir])
  t.equal(list.status, 0)
  t.match(list.stdout, /^\d+\tcheckpoint\tcompleted\t/m)
})
