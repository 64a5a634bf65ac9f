/**
 * The keyed count over NATS on this machine (docs/architecture.md section 21): two `weir node`
 * processes with checkpoints every second to Postgres, against raw NATS carrying the same
 * number of records in batches of the same size, in the same script. Then the time to recover
 * from a SIGKILLed node with 1M keys of state, and a new node's time to its first records.
 *
 *   node --import tsx bench/cluster.ts        # needs nats-server on the PATH and Postgres
 *
 * Prints a Markdown table for BENCHMARKS.md. Not a test: nothing here asserts.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { connect } from '@nats-io/transport-node'
import { ItemDecoder, ItemEncoder } from '../cluster/channel-wire.ts'
import { withFallbackUser } from '../persistence/postgres-store.ts'
import { startNatsServer } from '../test/support/nats-server.ts'

const PG_URL = process.env.WEIR_BENCH_PG_URL ?? 'postgres://127.0.0.1:5432/test'
const root = fileURLToPath(new URL('..', import.meta.url))
const BATCH = 1024

interface NodeRun {
  child: ChildProcess
  out: () => string
  exit: Promise<number | null>
  spawnedAt: number
}

function startNode(nats: string, schema: string, id: string, env: Record<string, string>, extra: string[] = []): NodeRun {
  let out = ''
  const child = spawn(
    process.execPath,
    ['bin/weir.js', 'node', 'bench/cluster-job.ts', '--nats', nats, '--store', PG_URL, '--pg-schema', schema, '--node-id', id, '--checkpoint-interval', '1000', '--heartbeat', '200', '--node-timeout', '1000', '--lease-expiry', '2000', ...extra],
    { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  return { child, out: () => out, exit: new Promise((r) => child.once('exit', r)), spawnedAt: Date.now() }
}

/** Timestamp (ms) of the first log line matching `re`, undefined if none. */
function at(out: string, re: RegExp): number | undefined {
  for (const line of out.split('\n')) if (re.test(line)) return Date.parse(line.slice(0, 24))
  return undefined
}

async function until(check: () => boolean, timeoutMs = 300_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: withFallbackUser(PG_URL) })
  await c.connect()
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  await c.end()
}

/** Raw NATS: `records` records in batches of 1024 as the data plane encodes them, publisher and subscriber on two connections. */
async function rawNats(url: string, records: number, keys: number): Promise<{ bytesOnly: number; withCodec: number }> {
  const batch = (start: number) => {
    const recs = Array.from({ length: BATCH }, (_, i) => ({ key: `k${(start + i) % keys}`, value: ((start + i) % 100) + 1, seq: start + i }))
    return { type: 'records' as const, records: recs, keys: recs.map((r) => r.key), groups: recs.map((_, i) => i % 128) }
  }
  const batches = Math.ceil(records / BATCH)
  const run = async (encodeEach: boolean): Promise<number> => {
    const pub = await connect({ servers: url })
    const sub = await connect({ servers: url })
    const encoder = new ItemEncoder()
    const decoder = new ItemDecoder()
    const fixed = new ItemEncoder().encode({ epoch: 1, attempt: 1 }, 1, batch(0))
    let got = 0
    let done!: () => void
    const finished = new Promise<void>((r) => (done = r))
    sub.subscribe('raw', {
      callback: (_e, m) => {
        if (encodeEach) decoder.decode(m.data)
        if (++got === batches) done()
      },
    })
    await sub.flush()
    const began = performance.now()
    for (let b = 0; b < batches; b++) {
      pub.publish('raw', encodeEach ? encoder.encode({ epoch: 1, attempt: 1 }, b + 1, batch(b * BATCH)) : fixed)
      // Let the client write out now and then, as the nodes' event loops do.
      if (b % 64 === 63) await pub.flush()
    }
    await finished
    const perSecond = (batches * BATCH) / ((performance.now() - began) / 1000)
    await pub.close()
    await sub.close()
    return perSecond
  }
  return { bytesOnly: await run(false), withCodec: await run(true) }
}

async function throughput(url: string, records: number, keys: number): Promise<{ perSecond: number; checkpoints: number }> {
  const schema = `weir_bench_cluster_${process.pid}`
  const env = { WEIR_BENCH_RECORDS: String(records), WEIR_BENCH_KEYS: String(keys) }
  try {
    const nodes = [startNode(url, schema, 'a', env, ['--min-nodes', '2']), startNode(url, schema, 'b', env, ['--min-nodes', '2'])]
    const codes = await Promise.all(nodes.map((n) => n.exit))
    if (codes.some((c) => c !== 0)) throw new Error(`a node failed: ${nodes.map((n) => n.out().slice(-2000)).join('\n')}`)
    const all = nodes.map((n) => n.out()).join('\n')
    const start = at(all, /deploying epoch=1 attempt=1/)!
    const end = at(all, /final checkpoint completed/)!
    return { perSecond: records / ((end - start) / 1000), checkpoints: all.match(/checkpoint completed/g)?.length ?? 0 }
  } finally {
    await dropSchema(schema)
  }
}

/** The same job in one process (`weir run`, local mode), checkpoints every second to Postgres. */
async function oneProcess(records: number, keys: number): Promise<number> {
  const schema = `weir_bench_local_${process.pid}`
  let out = ''
  const child = spawn(process.execPath, ['bin/weir.js', 'run', 'bench/cluster-job.ts', '--store', PG_URL, '--pg-schema', schema, '--checkpoint-interval', '1000'], {
    cwd: root,
    env: { ...process.env, WEIR_BENCH_RECORDS: String(records), WEIR_BENCH_KEYS: String(keys) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  try {
    const code = await new Promise((r) => child.once('exit', r))
    if (code !== 0) throw new Error(`weir run failed: ${out.slice(-2000)}`)
    return records / ((at(out, /job -> finished/)! - at(out, /job -> running/)!) / 1000)
  } finally {
    await dropSchema(schema)
  }
}

async function recoveryAndJoin(url: string): Promise<{ recoveryMs: number; detectMs: number; joinMs: number; keys: number; size: string }> {
  const schema = `weir_bench_recovery_${process.pid}`
  const keys = 1_000_000
  // 3M records over 1M keys at 150k/s per source instance: about 10 s, every key present early.
  const env = { WEIR_BENCH_RECORDS: '6000000', WEIR_BENCH_KEYS: String(keys), WEIR_BENCH_RATE: '150000' }
  const nodes: NodeRun[] = []
  try {
    nodes.push(startNode(url, schema, 'a', env, ['--min-nodes', '2']), startNode(url, schema, 'b', env, ['--min-nodes', '2']))
    const coordinator = () => nodes.find((n) => /coordinating the job/.test(n.out()))
    await until(() => (coordinator()?.out().match(/checkpoint completed/g)?.length ?? 0) >= 8)
    const c = coordinator()!
    const size = [...c.out().matchAll(/checkpoint completed .* size="([^"]+)"/g)].at(-1)?.[1] ?? '?'
    const victim = nodes.find((n) => n !== c)!
    const killedAt = Date.now()
    victim.child.kill('SIGKILL')
    await until(() => /running node=\S+ epoch=1 attempt=2/.test(c.out()))
    const recoveredAt = at(c.out(), /running node=\S+ epoch=1 attempt=2/)!
    const detectedAt = at(c.out(), /recovering the job/)!
    const joiner = startNode(url, schema, 'c', env)
    nodes.push(joiner)
    await until(() => /running node=c /.test(joiner.out()))
    const joinedAt = at(joiner.out(), /running node=c /)!
    return { recoveryMs: recoveredAt - killedAt, detectMs: detectedAt - killedAt, joinMs: joinedAt - joiner.spawnedAt, keys, size }
  } finally {
    for (const n of nodes) n.child.kill('SIGKILL')
    await dropSchema(schema)
  }
}

const nats = await startNatsServer()
try {
  const records = Number(process.env.WEIR_BENCH_RECORDS ?? 4_000_000)
  const keys = 100_000
  const raw = await rawNats(nats.url, records, keys)
  const cluster = await throughput(nats.url, records, keys)
  const local = await oneProcess(records, keys)
  const rec = await recoveryAndJoin(nats.url)
  const f = (n: number) => `${Math.round(n / 1000)}k/s`
  console.log(`| measurement | figure |\n| --- | --- |`)
  console.log(`| raw NATS, pre-encoded 1024-record batches, ${records / 1e6}M records | ${f(raw.bytesOnly)} |`)
  console.log(`| raw NATS, each batch encoded and decoded (Weir's channel codec) | ${f(raw.withCodec)} |`)
  console.log(`| keyed count, 2 weir node processes, ${keys / 1000}k keys, checkpoints 1 s to Postgres (${cluster.checkpoints} completed) | ${f(cluster.perSecond)} (${(cluster.perSecond / raw.bytesOnly).toFixed(2)} of raw, ${(cluster.perSecond / raw.withCodec).toFixed(2)} of raw with codec) |`)
  console.log(`| the same job in one process (weir run), checkpoints 1 s to Postgres | ${f(local)} (cluster: ${(cluster.perSecond / local).toFixed(2)}x) |`)
  console.log(`| recovery, SIGKILL of a node to processing resumed on the other, up to ${rec.keys / 1e6}M keys, last checkpoint ${rec.size} (node timeout 1 s) | ${rec.recoveryMs} ms (detected after ${rec.detectMs} ms) |`)
  console.log(`| a node joining: process start to its first instances running | ${rec.joinMs} ms |`)
} finally {
  await nats.cleanup()
}
