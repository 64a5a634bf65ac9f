/**
 * What a runner does about the current holder of a job's lease (docs/architecture.md section 8):
 * the decision on its own, the look at real processes (dead, zombie, reused pid), and both stores
 * waiting out a holder whose heartbeat stopped and refusing one that goes on.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, utimes, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { EmbeddedStore } from '../../persistence/embedded-store.ts'
import { JobAlreadyRunningError } from '../../persistence/errors.ts'
import { holderProcess, processStat, type HolderProcess, type RecordedHolder } from '../../persistence/lease.ts'
import { decideTakeover, describeLeaseWait, stoppedAfterMs } from '../../persistence/lease-takeover.ts'
import type { LeaseWait, SnapshotStore } from '../../persistence/store.ts'
import { pgClient, testStores, type TestStore } from '../support/stores.ts'

const holder = (fields: Partial<RecordedHolder> = {}): RecordedHolder => ({
  owner: 'o-1',
  host: hostname(),
  pid: 4242,
  since: 1_000,
  processStart: 777,
  expiryMs: 9_000,
  heartbeatMs: 3_000,
  ...fields,
})
const running = (startTime: number | undefined): HolderProcess => ({ kind: 'running', startTime })

t.test('takeover - a holder on this host that is dead, a zombie or under a reused pid is taken at once', async (t) => {
  const fresh = { holder: holder(), sinceHeartbeatMs: 100 }
  t.match(decideTakeover(fresh, { kind: 'gone' }, 'wait'), { action: 'take', reason: 'its process is gone' })
  t.match(decideTakeover(fresh, { kind: 'zombie' }, 'wait'), { action: 'take', reason: /zombie/ })
  t.match(decideTakeover(fresh, running(778), 'wait'), { action: 'take', reason: /pid belongs to another process/ })
  t.match(decideTakeover({ ...fresh, sinceHeartbeatMs: 9_000 }, running(777), 'wait'), { action: 'take', reason: 'its lease expired' })
})

t.test('takeover - a holder still heartbeating is refused; one whose heartbeat stopped is waited for until its expiry', async (t) => {
  const h = holder()
  t.same(decideTakeover({ holder: h, sinceHeartbeatMs: stoppedAfterMs(3_000) }, running(777), 'wait'), { action: 'refuse' }, 'a late heartbeat still counts')
  t.same(decideTakeover({ holder: h, sinceHeartbeatMs: 5_000 }, running(777), 'wait'), { action: 'wait', waitMs: 4_000, recheckMs: 3_000 })
  t.same(decideTakeover({ holder: h, sinceHeartbeatMs: 5_000 }, { kind: 'elsewhere' }, 'wait'), { action: 'wait', waitMs: 4_000, recheckMs: 3_000 }, 'on another host too')
  t.same(decideTakeover({ holder: h, sinceHeartbeatMs: 100 }, { kind: 'elsewhere' }, 'wait'), { action: 'refuse' })
  t.same(decideTakeover({ holder: h, sinceHeartbeatMs: 5_000 }, { kind: 'self' }, 'wait'), { action: 'refuse' }, 'this process holds it')
  const old = holder({ processStart: undefined, heartbeatMs: undefined })
  t.same(decideTakeover({ holder: old, sinceHeartbeatMs: 100 }, running(5), 'wait'), { action: 'refuse' }, 'a lease without a process start cannot tell a reused pid')
  t.same(decideTakeover({ holder: old, sinceHeartbeatMs: 5_000 }, running(5), 'wait'), { action: 'wait', waitMs: 4_000, recheckMs: 3_000 }, 'nor its interval: a third of the expiry')
})

t.test('takeover - refuse: only an expired lease or a process that is gone is taken', async (t) => {
  const fresh = { holder: holder(), sinceHeartbeatMs: 5_000 }
  t.same(decideTakeover(fresh, { kind: 'zombie' }, 'refuse'), { action: 'refuse' })
  t.same(decideTakeover(fresh, running(778), 'refuse'), { action: 'refuse' })
  t.same(decideTakeover(fresh, running(777), 'refuse'), { action: 'refuse' })
  t.match(decideTakeover(fresh, { kind: 'gone' }, 'refuse'), { action: 'take' })
  t.match(decideTakeover({ ...fresh, sinceHeartbeatMs: 9_000 }, running(777), 'refuse'), { action: 'take' })
})

/** A shell that starts `sleep` in the background and becomes another `sleep`: the first one's parent never reaps it. */
async function parentThatNeverReaps(t: Test): Promise<{ parent: ChildProcess; child: number }> {
  const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => void parent.kill('SIGKILL'))
  const [line] = (await once(parent.stdout!, 'data')) as [Buffer]
  return { parent, child: Number(line.toString().trim()) }
}

t.test('takeover - the look at real processes: running with its start time, a zombie, gone', async (t) => {
  const { child } = await parentThatNeverReaps(t)
  const stat = processStat(child)
  t.ok(typeof stat === 'object' && stat.startTime > 0, 'the start time from /proc/<pid>/stat')
  const startTime = typeof stat === 'object' ? stat.startTime : undefined
  t.same(holderProcess({ owner: 'x', host: hostname(), pid: child }), { kind: 'running', startTime })
  process.kill(child, 'SIGKILL')
  await new Promise((r) => setTimeout(r, 100))
  t.doesNotThrow(() => process.kill(child, 0), 'the zombie still answers kill(pid, 0)')
  t.same(holderProcess({ owner: 'x', host: hostname(), pid: child }), { kind: 'zombie' })
  const done = spawn('true')
  await once(done, 'exit')
  t.same(holderProcess({ owner: 'x', host: hostname(), pid: done.pid! }), { kind: 'gone' })
  t.same(holderProcess({ owner: 'x', host: 'another-host', pid: child }), { kind: 'elsewhere' })
  t.same(holderProcess({ owner: 'not-held', host: hostname(), pid: process.pid }), { kind: 'gone' }, 'this process, not holding that lease')
})

/** Records `h` as the job's current holder, its last heartbeat `silentMs` ago, as a store of that kind would. */
async function plantHolder(ts: TestStore, job: string, h: RecordedHolder, silentMs: number): Promise<void> {
  if (ts.kind === 'embedded') {
    const jobDir = join(ts.cliArgs[3]!, job)
    await mkdir(jobDir, { recursive: true })
    await writeFile(join(jobDir, 'lease-1.json'), JSON.stringify(h))
    const at = new Date(Date.now() - silentMs)
    await utimes(join(jobDir, 'lease-1.json'), at, at)
    return
  }
  const client = await pgClient()
  try {
    await client.query(
      `INSERT INTO "${ts.cliArgs[3]!}".job_leases (job, epoch, owner, host, pid, since, heartbeat_at, expiry_ms, process_start, heartbeat_ms)
       VALUES ($1, 1, $2, $3, $4, to_timestamp($5::float8 / 1000), clock_timestamp() - $6 * interval '1 millisecond', $7, $8, $9)`,
      [job, h.owner, h.host, h.pid, h.since, silentMs, h.expiryMs, h.processStart, h.heartbeatMs],
    )
  } finally {
    await client.end()
  }
}

for (const { name, make } of testStores) {
  const withStore = async (t: Test): Promise<{ ts: TestStore; store: SnapshotStore; live: { pid: number; processStart: number } }> => {
    const ts = make()
    t.teardown(() => ts.cleanup())
    await ts.store.open()
    // A live process of this host that is no runner: its lease says whether it still beats.
    const { parent } = await parentThatNeverReaps(t)
    const stat = processStat(parent.pid!)
    if (typeof stat !== 'object') throw new Error('this test needs /proc')
    return { ts, store: ts.store, live: { pid: parent.pid!, processStart: stat.startTime } }
  }

  t.test(`takeover (${name}) - a holder whose heartbeat stopped is waited out to its expiry, with a line saying whom and how long; then taken with a new epoch`, async (t) => {
    const { ts, store, live } = await withStore(t)
    const silent = holder({ owner: 'silent-holder', pid: live.pid, processStart: live.processStart, since: Date.now() - 5_000, expiryMs: 2_000, heartbeatMs: 200 })
    await plantHolder(ts, 'stalled', silent, 700)
    const waits: LeaseWait[] = []
    const started = Date.now()
    const lease = await store.acquireLease('stalled', { expiryMs: 5_000, onWait: (w) => waits.push(w) })
    const took = Date.now() - started
    t.equal(lease.epoch, 2, 'taken with the next epoch, which fences the holder')
    t.ok(took >= 1_000 && took < 4_000, `waited until the expiry, about 1300 ms (${took} ms)`)
    t.equal(waits.length, 1, 'one wait line for the holder')
    const wait = waits[0]!
    t.match(wait, { job: 'stalled', holder: { owner: 'silent-holder', host: hostname(), pid: live.pid } })
    t.ok(wait.waitMs > 1_000 && wait.waitMs <= 1_300, `it says how long: ${wait.waitMs} ms`)
    t.match(
      describeLeaseWait(wait),
      new RegExp(`^waiting up to \\d+ ms for the lease of job 'stalled': its holder silent-holder \\(host ${hostname()}, pid ${live.pid}\\) has not renewed it for \\d+ ms; it is taken over with a new epoch when it expires$`),
    )
    await lease.release()
  })

  t.test(`takeover (${name}) - a holder still heartbeating is refused at once; under takeover: 'refuse' so is a silent one`, async (t) => {
    const { ts, store, live } = await withStore(t)
    const beating = holder({ owner: 'beating', pid: live.pid, processStart: live.processStart, since: Date.now(), expiryMs: 60_000, heartbeatMs: 20_000 })
    await plantHolder(ts, 'busy', beating, 10)
    const started = Date.now()
    const err = await store.acquireLease('busy').catch((e: unknown) => e)
    t.type(err, JobAlreadyRunningError)
    t.match(err, { job: 'busy', holder: { owner: 'beating', host: hostname(), pid: live.pid } })
    t.ok(Date.now() - started < 1_000, 'at once')
    await plantHolder(ts, 'quiet', { ...beating, owner: 'quiet', heartbeatMs: 100 }, 1_000)
    const refused = await store.acquireLease('quiet', { takeover: 'refuse' }).catch((e: unknown) => e)
    t.type(refused, JobAlreadyRunningError, 'a silent holder is refused, not waited for')
  })

  t.test(`takeover (${name}) - a holder whose pid now belongs to another process is taken at once`, async (t) => {
    const { ts, store, live } = await withStore(t)
    await plantHolder(ts, 'reused', holder({ owner: 'before', pid: live.pid, processStart: live.processStart - 1, since: Date.now(), expiryMs: 60_000 }), 10)
    const lease = await store.acquireLease('reused')
    t.equal(lease.epoch, 2)
    await lease.release()
  })
}

t.test('takeover - a bad takeover option fails when the store is made', async (t) => {
  t.throws(() => new EmbeddedStore({ dir: 'x', lease: { takeover: 'never' as 'wait' } }), { name: 'InvalidOptionError', option: 'embedded.lease.takeover' })
})
