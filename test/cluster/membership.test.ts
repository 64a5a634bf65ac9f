/**
 * Membership and operations of a cluster job: a node that joins a running job takes over key
 * groups at a checkpoint; a node started with another job graph is refused, saying what
 * differs; `weir nodes`, `weir status` and `weir cancel` answer over NATS; and bytes that are no
 * messages, truncated messages and replayed messages on the job's subjects crash nothing and
 * corrupt nothing.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { connect, type Msg } from '@nats-io/transport-node'
import { TestCluster } from '../support/cluster.ts'
import { assertFinalState, expectedState } from '../support/counting.ts'
import { waitFor } from '../support/kill-runs.ts'
import { hasNatsServer, NO_NATS_SERVER, startNatsServer, type TestNatsServer } from '../support/nats-server.ts'
import { postgresTestStore } from '../support/stores.ts'

if (!hasNatsServer()) t.fail(NO_NATS_SERVER)

const root = fileURLToPath(new URL('../..', import.meta.url))
let nats: TestNatsServer
t.before(async () => {
  nats = await startNatsServer()
})
t.teardown(async () => await nats.cleanup())

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function setup(tt: Test, records: number, rate: number, env: Record<string, string> = {}) {
  const job = `members-${process.pid}-${Math.random().toString(36).slice(2, 7)}`
  const ts = postgresTestStore()
  await ts.store.open()
  const cluster = new TestCluster({
    jobFile: 'test/fixtures/counting-job.ts',
    nats: nats.url,
    store: ts.cliArgs,
    env: { WEIR_FIXTURE_JOB: job, WEIR_FIXTURE_RECORDS: String(records), WEIR_FIXTURE_KEYS: '500', WEIR_FIXTURE_SEED: '11', WEIR_FIXTURE_RATE: String(rate), ...env },
  })
  tt.teardown(async () => {
    cluster.stopAll()
    await ts.cleanup()
  })
  return { job, ts, cluster, expected: expectedState({ records, keys: 500, seed: 11 }) }
}

/** Runs `weir <args>`; resolves with its exit code and output. */
function weir(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/weir.js', ...args], { cwd: root, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

t.test('a node joining a running job takes over key groups at a checkpoint', async (tt) => {
  const { job, ts, cluster, expected } = await setup(tt, 150_000, 25_000)
  const first = [cluster.start(['--min-nodes', '2']), cluster.start(['--min-nodes', '2'])]
  tt.ok(await cluster.checkpoints(2), 'two nodes run and checkpoint')
  const joined = cluster.start()
  tt.ok(await waitFor(() => /running node=n3 /.test(joined.output()), 30_000), 'the new node runs instances', { logs: cluster.logs() })
  const codes = await cluster.finish()
  tt.ok([...codes.values()].every((c) => c === 0), 'every node exits 0', { logs: cluster.logs() })
  const coordinator = first.find((n) => /coordinating the job/.test(n.output()))!
  tt.match(coordinator.output(), /rescaling at the next checkpoint reason="node n3 joined"/, 'the coordinator rescaled for the new node')
  tt.match(coordinator.output(), /deploying epoch=1 attempt=2 from=\d+ nodes="n1 n2 n3" parallelism=\{"in":1,"count":3\}/, 'from a checkpoint, onto three nodes')
  tt.notMatch(coordinator.output(), /recovering the job/, 'without a failure')
  await assertFinalState(tt, ts, job, expected)
})

t.test('a node with another job graph is refused and says what differs', async (tt) => {
  const { cluster } = await setup(tt, 400_000, 25_000)
  const good = cluster.start()
  tt.ok(await waitFor(() => /running node=/.test(good.output()), 30_000), 'the job runs on its first node')
  const other = cluster.start([], 'odd', { WEIR_FIXTURE_PARALLELISM: '5' })
  const code = await other.exit
  tt.equal(code, 1, 'the node with another graph exits 1')
  tt.match(other.output(), /node odd runs another job graph than the coordinator n1: operator count differs\. Start every node of job \S+ with the same job file/)
  tt.notOk(good.exited, 'the job goes on')
  good.child.kill('SIGKILL')
})

t.test('weir nodes, weir status and weir cancel', async (tt) => {
  const { job, cluster } = await setup(tt, 2_000_000, 25_000)
  cluster.start(['--min-nodes', '2'])
  cluster.start(['--min-nodes', '2'])
  tt.ok(await cluster.checkpoints(1), 'the job runs')
  const nodes = await weir(['nodes', job, '--nats', nats.url])
  tt.equal(nodes.code, 0)
  tt.match(nodes.stdout, /^n1\trunning( coordinator)?\tslots 1\tattempt 1\.1\t/m)
  tt.match(nodes.stdout, /^n2\trunning( coordinator)?\tslots 1\tattempt 1\.1\t/m)
  const status = await weir(['status', job, '--nats', nats.url])
  tt.equal(status.code, 0, 'status answers', { stderr: status.stderr })
  const s = JSON.parse(status.stdout) as { job: string; state: string; parallelism: Record<string, number>; nodes: { node: string; instances: { instance: string; status: string; recordsIn: number; recordsOut: number; backpressured: boolean }[] }[]; lastCheckpoint?: { id: number } }
  tt.equal(s.job, job)
  tt.equal(s.state, 'running')
  tt.same(s.parallelism, { in: 1, count: 2 })
  tt.same(s.nodes.map((n) => n.instances.length).sort(), [1, 2], 'every instance on a node')
  const instances = s.nodes.flatMap((n) => n.instances)
  tt.same(instances.map((i) => i.instance).sort(), ['count[0]', 'count[1]', 'in[0]'])
  for (const i of instances) tt.match(i, { status: /^running\./, recordsIn: Number, recordsOut: Number, backpressured: Boolean }, `${i.instance}: lifecycle state, records and backpressure`)
  tt.ok(instances.find((i) => i.instance === 'in[0]')!.recordsOut > 0, 'the source has sent records')
  tt.ok(instances.filter((i) => i.instance.startsWith('count')).every((i) => i.recordsIn > 0), 'each count instance has taken records')
  const listed = await weir(['jobs', '--nats', nats.url])
  tt.equal(listed.code, 0, 'weir jobs answers', { stderr: listed.stderr })
  tt.match(listed.stdout, new RegExp(`^${job}\\t2 nodes\\tcoordinator n[12]\\tattempt 1\\.1\\trunning$`, 'm'), 'weir jobs lists the job')
  tt.ok(s.lastCheckpoint !== undefined, 'the last checkpoint is shown')
  const nobody = await weir(['status', 'no-such-job', '--nats', nats.url, '--timeout', '500'])
  tt.equal(nobody.code, 1)
  tt.match(nobody.stderr, /no coordinator of job no-such-job answered within 500 ms/)
  const cancel = await weir(['cancel', job, '--nats', nats.url])
  tt.equal(cancel.code, 0)
  const codes = await cluster.finish(30_000)
  tt.same([...codes.values()], [0, 0], 'both nodes end')
  tt.ok(cluster.live().length === 0 && [...cluster.nodes.values()].every((n) => /job canceled/.test(n.output())), 'as canceled')
})

t.test('garbage, truncated and replayed messages on the job subjects: no crash, exact state', async (tt) => {
  const { job, ts, cluster, expected } = await setup(tt, 150_000, 25_000)
  for (let i = 0; i < 2; i++) cluster.start(['--min-nodes', '2'])
  tt.ok(await cluster.checkpoints(2), 'the job runs')
  const nc = await connect({ servers: nats.url })
  tt.teardown(() => nc.close())
  const seen: Msg[] = []
  const spy = nc.subscribe(`weir.${job}.>`, { callback: (_e, m) => void (seen.length < 2000 && seen.push(m)) })
  await pause(400)
  spy.unsubscribe()
  const data = seen.filter((m) => m.subject.includes('.d.'))
  tt.ok(data.length > 0, `captured ${seen.length} messages, ${data.length} on channels`)
  const subjects = [...new Set(seen.map((m) => m.subject))]
  for (let round = 0; round < 3; round++) {
    for (const subject of subjects) {
      nc.publish(subject, randomBytes(1 + Math.floor(Math.random() * 64)))
      nc.publish(subject, new Uint8Array(0))
    }
    for (const m of data.slice(0, 20)) {
      nc.publish(m.subject, m.data) // a replay: an old sequence number
      nc.publish(m.subject, m.data.subarray(0, m.data.byteLength >> 1)) // truncated
    }
    for (const m of seen.filter((x) => !x.subject.includes('.d.')).slice(0, 20)) nc.publish(m.subject, m.data.subarray(0, 3))
    await pause(600)
  }
  await nc.flush()
  const codes = await cluster.finish()
  tt.ok([...codes.values()].every((c) => c === 0), 'every node exits 0 (no crash)', { logs: cluster.logs() })
  tt.ok([...cluster.nodes.values()].some((n) => /recovering the job reason=".*(gap or a replay|do not decode|not a channel message|a malformed|without|frame byte|probe|messages lost)/.test(n.output())), 'a broken channel made the coordinator recover the job')
  await assertFinalState(tt, ts, job, expected)
})
