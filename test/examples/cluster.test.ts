/**
 * The cluster example (examples/cluster): two `weir node` processes, one killed part-way and
 * started again, end with every page's count and last view exactly as the input has them.
 */
import t from 'tap'
import { generatedRecord, readSnapshotState } from 'weir'
import { TestCluster } from '../support/cluster.ts'
import { hasNatsServer, NO_NATS_SERVER, startNatsServer } from '../support/nats-server.ts'
import { postgresTestStore } from '../support/stores.ts'

if (!hasNatsServer()) t.fail(NO_NATS_SERVER)

t.test('page views on two nodes, one killed and started again', async (t) => {
  const nats = await startNatsServer()
  const ts = postgresTestStore()
  await ts.store.open()
  const records = 100_000
  const cluster = new TestCluster({ jobFile: 'examples/cluster/job.ts', nats: nats.url, store: ts.cliArgs, env: { WEIR_EXAMPLE_RECORDS: String(records), WEIR_EXAMPLE_RATE: '40000' } })
  t.teardown(async () => {
    cluster.stopAll()
    await ts.cleanup()
    await nats.cleanup()
  })
  const [a, b] = [cluster.start(['--min-nodes', '2'], 'a'), cluster.start(['--min-nodes', '2'], 'b')]
  t.ok(await cluster.checkpoints(2), 'the job runs on both nodes')
  await cluster.kill(b!)
  cluster.start([], 'b2')
  const codes = await cluster.finish()
  t.same([...codes.entries()], [['a', 0], ['b', null], ['b2', 0]], 'the nodes left end with 0', { logs: cluster.logs() })
  // b may have been the coordinator: then a takes the lease (epoch 2) and restores, instead of recovering as coordinator.
  t.match(a!.output(), /recovering the job reason="node b stopped answering|coordinating the job node=a epoch=2/, 'a carried on without b')
  const count = new Map<string, number>()
  const last = new Map<string, number>()
  for (let seq = 0; seq < records; seq++) {
    const r = generatedRecord({ keys: 1000, seed: 42 }, seq)
    const page = `/page/${r.key.slice(1)}`
    count.set(page, (count.get(page) ?? 0) + 1)
    last.set(page, seq)
  }
  t.same(await readSnapshotState(ts.store, 'page-views', 'views', 'count'), count, 'every page counted exactly')
  t.same(await readSnapshotState(ts.store, 'page-views', 'views', 'last'), last, 'and its last view is the input last one')
})
