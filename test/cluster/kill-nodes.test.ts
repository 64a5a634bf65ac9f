/**
 * A job across `weir node` processes over a NATS server of the test's own: it ends with exact
 * state (per key: sum, count, the last five sequence numbers in order, buckets) when it runs
 * through, and when nodes are SIGKILLed at random moments, the coordinator's among them, and
 * two at once, while new nodes join.
 */
import t, { type Test } from 'tap'
import { TestCluster } from '../support/cluster.ts'
import { assertFinalState, expectedState } from '../support/counting.ts'
import { hasNatsServer, NO_NATS_SERVER, startNatsServer, type TestNatsServer } from '../support/nats-server.ts'
import { postgresTestStore } from '../support/stores.ts'

if (!hasNatsServer()) t.fail(NO_NATS_SERVER)

const JOB_FILE = 'test/fixtures/counting-job.ts'
let nats: TestNatsServer

t.before(async () => {
  nats = await startNatsServer()
})
t.teardown(async () => await nats.cleanup())

function setup(tt: Test, records: number, rate: number) {
  const job = `cluster-${process.pid}-${Math.random().toString(36).slice(2, 7)}`
  const ts = postgresTestStore()
  const size = { records, keys: 500, seed: 11 }
  const cluster = new TestCluster({
    jobFile: JOB_FILE,
    nats: nats.url,
    store: ts.cliArgs,
    env: { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(records), WEIR_FIXTURE_KEYS: '500', WEIR_FIXTURE_SEED: '11', WEIR_FIXTURE_RATE: String(rate) },
  })
  tt.teardown(async () => {
    cluster.stopAll()
    await ts.cleanup()
  })
  return { job, ts, cluster, expected: expectedState(size) }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Asserts that every deployment after the first attempt's restored a completed checkpoint, never
 * nothing (a job started again from scratch would end with the same state, and prove nothing).
 */
function assertRedeploysRestored(tt: Test, cluster: TestCluster): void {
  const redeploys = [...cluster.nodes.values()].flatMap((n) => [...n.output().matchAll(/deploying epoch=\d+ attempt=(\d+) from=(\S+)/g)]).filter((m) => Number(m[1]) > 1)
  tt.ok(redeploys.length > 0, `the job was deployed again after the first attempt (${redeploys.length} times)`)
  const fromNothing = redeploys.filter((m) => !/^\d+$/.test(m[2]!)).map((m) => m[0])
  tt.equal(fromNothing.length, 0, 'every later deployment restored a completed checkpoint', { fromNothing })
}

t.test('three nodes run a job to the end with exact state', async (tt) => {
  const { job, ts, cluster, expected } = setup(tt, 60_000, 40_000)
  await ts.store.open()
  for (let i = 0; i < 3; i++) cluster.start(['--min-nodes', '3'])
  const codes = await cluster.finish()
  tt.same([...codes.values()], [0, 0, 0], 'every node exits 0 when the job finished', { logs: cluster.logs() })
  const ran = [...cluster.nodes.values()].filter((n) => /running node=\S+ epoch=\d+ attempt=1 instances=/.test(n.output()))
  tt.equal(ran.length, 3, 'the first attempt ran instances on all three nodes')
  await assertFinalState(tt, ts, job, expected)
})

t.test('the coordinator killed with no node to replace it: the one left takes over and finishes, exact', async (tt) => {
  const { job, ts, cluster, expected } = setup(tt, 100_000, 25_000)
  await ts.store.open()
  for (let i = 0; i < 2; i++) cluster.start(['--min-nodes', '2'])
  tt.ok(await cluster.checkpoints(2), 'the job checkpoints')
  const old = cluster.coordinator()!
  await cluster.kill(old)
  const codes = await cluster.finish()
  tt.same([...codes.entries()].filter(([id]) => id !== old.id).map(([, c]) => c), [0], 'the node left exits 0', { logs: cluster.logs() })
  // --min-nodes 2 is for the first start: the node taking over resumes alone instead of waiting.
  tt.ok([...cluster.nodes.values()].some((n) => n !== old && /coordinating the job node=\S+ epoch=2/.test(n.output())), 'it took the lease')
  assertRedeploysRestored(tt, cluster)
  await assertFinalState(tt, ts, job, expected)
})

t.test('SIGKILL of random nodes, of the coordinator and of two at once ends exact', async (tt) => {
  const { job, ts, cluster, expected } = setup(tt, 150_000, 25_000)
  await ts.store.open()
  for (let i = 0; i < 3; i++) cluster.start(['--min-nodes', '3'])
  tt.ok(await cluster.checkpoints(2), 'the job checkpoints', { logs: cluster.logs() })
  const kills: string[] = []
  // 1: a random node; 2: the coordinator's; 3: two at once. Each time as many new nodes join.
  for (let round = 0; round < 3; round++) {
    await pause(300 + Math.floor(Math.random() * 700))
    const live = cluster.live()
    if (live.length === 0) break
    const victims = round === 1 ? [cluster.coordinator() ?? live[0]!] : round === 2 ? live.sort(() => Math.random() - 0.5).slice(0, 2) : [live[Math.floor(Math.random() * live.length)]!]
    if (victims.some((v) => v.exited)) break
    for (const v of victims) await cluster.kill(v)
    kills.push(victims.map((v) => v.id).join('+'))
    for (const _ of victims) cluster.start()
    const before = cluster.live().reduce((k, n) => k + (n.output().match(/checkpoint completed/g)?.length ?? 0), 0)
    await cluster.checkpoints(before + 1, 30_000)
  }
  tt.equal(kills.length, 3, `three rounds of kills happened before the job ended (${kills.join(', ')})`)
  const codes = await cluster.finish()
  const alive = [...codes.entries()].filter(([, c]) => c !== null)
  tt.ok(alive.length >= 1 && alive.every(([, c]) => c === 0), 'every node not killed exits 0', { codes: [...codes.entries()], logs: cluster.logs() })
  // A killed coordinator's job is restored by the node taking over (a newer epoch); any other kill by the coordinator.
  const recovered = [...cluster.nodes.values()].some((n) => /recovering the job|coordinating the job node=\S+ epoch=([2-9]|\d\d)/.test(n.output()))
  tt.ok(recovered, 'a coordinator recovered the job or a new one took it over')
  assertRedeploysRestored(tt, cluster)
  await assertFinalState(tt, ts, job, expected)
})
