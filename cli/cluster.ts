/**
 * The cluster commands of the `weir` command line: `weir node` runs a node of a job; `weir nodes`,
 * `weir status` and `weir cancel` ask a running job over NATS.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import type { NatsConnection } from '@nats-io/transport-node'
import { DEFAULT_TUNING } from '../actors/runtime/executor-options.ts'
import { resolveCheckpointOptions } from '../supervisor/checkpoint-options.ts'
import { createLogger, LOG_LEVELS, type LogLevel } from '../actors/runtime/logger.ts'
import { connectNats, NATS_FLAGS, NATS_USAGE, natsConnectionOptions, NatsOptionError, natsFlagsFrom } from '../cluster/nats-options.ts'
import { decodeHeartbeat, jobSubjects, newer, type Heartbeat } from '../cluster/control.ts'
import { WeirNode } from '../cluster/node.ts'
import { Decoder } from 'cbor-x'
import { int, loadJob, ms, storeFrom, STORE_OPTIONS, UsageError } from './common.ts'

const decoder = new Decoder({ useRecords: false })

export const CLUSTER_USAGE = `Cluster commands:
  weir node <job.ts> [options]     run a node of the job; the nodes of a job elect a coordinator
  weir jobs [nats options]         list the jobs whose nodes are heard on NATS
  weir nodes <job> [nats options]  list the live nodes of a job
  weir status <job> [nats options] the job's attempt, instances, records and last checkpoint (JSON)
  weir cancel <job> [nats options] cancel the job on every node

Node options (and the store and checkpoint options of weir run):
  --slots <n>                      instances of each operator this node takes (default 1)
  --node-id <id>                   this node's name, unique in the job (default <host>-<pid>)
  --min-nodes <n>                  nodes to wait for before the first start (default 1)
  --heartbeat <ms>                 time between heartbeats (default 500)
  --node-timeout <ms>              a node silent this long is dead (default 3000)
  --lease-expiry <ms>              how long a silent coordinator keeps the job (default 5000)
  --subject-prefix <name>          first token of the job's NATS subjects (default weir)
  --nats-timeout <ms>              give up after NATS was unreachable this long (default 60000)

${NATS_USAGE}`

const NODE_OPTIONS = {
  ...STORE_OPTIONS,
  ...NATS_FLAGS,
  slots: { type: 'string' },
  'node-id': { type: 'string' },
  'min-nodes': { type: 'string' },
  heartbeat: { type: 'string' },
  'node-timeout': { type: 'string' },
  'lease-expiry': { type: 'string' },
  'subject-prefix': { type: 'string' },
  'nats-timeout': { type: 'string' },
  'checkpoint-interval': { type: 'string' },
  'checkpoint-mode': { type: 'string' },
  'checkpoint-timeout': { type: 'string' },
  retained: { type: 'string' },
  restore: { type: 'string' },
  'log-level': { type: 'string' },
} as const satisfies ParseArgsConfig['options']

const ASK_OPTIONS = { ...NATS_FLAGS, 'subject-prefix': { type: 'string' }, timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const satisfies ParseArgsConfig['options']

/** `weir node <job.ts>`: runs until the job finishes (0), is canceled (0), or fails (1). */
export async function node(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: NODE_OPTIONS, allowPositionals: true, strict: true })
  if (values.help === true) {
    process.stdout.write(CLUSTER_USAGE)
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('weir node needs exactly one job file')
  const level = (values['log-level'] ?? 'info') as LogLevel
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`)
  const restoreArg = values.restore ?? 'latest'
  const restore = restoreArg === 'latest' || restoreArg === 'none' ? restoreArg : int('restore', restoreArg)!
  const slots = int('slots', values.slots) ?? 1
  if (slots < 1) throw new UsageError('--slots must be at least 1')
  let checkpoints
  try {
    checkpoints = resolveCheckpointOptions({
      intervalMs: ms('checkpoint-interval', values['checkpoint-interval']) ?? 1000,
      ...(values['checkpoint-mode'] === undefined ? {} : { mode: values['checkpoint-mode'] }),
      ...(values['checkpoint-timeout'] === undefined ? {} : { timeoutMs: ms('checkpoint-timeout', values['checkpoint-timeout']) }),
      ...(values.retained === undefined ? {} : { retained: int('retained', values.retained) }),
    })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const nats = natsOptions(values)
  const definition = await loadJob(positionals[0]!)
  const graph = definition.graph()
  const logger = createLogger({ level }).child(graph.name)
  const store = storeFrom(values)
  let nc: NatsConnection | undefined
  try {
    await store.open()
    nc = await connectNats(nats, `weir node ${graph.name}`)
    const n = new WeirNode({
      graph,
      store,
      nats: nc,
      slots,
      checkpoints,
      restore,
      logger,
      tuning: DEFAULT_TUNING,
      ...(values['node-id'] === undefined ? {} : { nodeId: values['node-id'] }),
      ...(values['min-nodes'] === undefined ? {} : { minNodes: int('min-nodes', values['min-nodes'])! }),
      ...(values.heartbeat === undefined ? {} : { heartbeatMs: ms('heartbeat', values.heartbeat)! }),
      ...(values['node-timeout'] === undefined ? {} : { nodeTimeoutMs: ms('node-timeout', values['node-timeout'])! }),
      ...(values['lease-expiry'] === undefined ? {} : { leaseExpiryMs: ms('lease-expiry', values['lease-expiry'])! }),
      ...(values['subject-prefix'] === undefined ? {} : { subjectPrefix: values['subject-prefix'] }),
      ...(values['nats-timeout'] === undefined ? {} : { natsTimeoutMs: ms('nats-timeout', values['nats-timeout'])! }),
    })
    let signals = 0
    const leave = (signal: NodeJS.Signals) => {
      if (++signals > 1) process.exit(128 + (signal === 'SIGINT' ? 2 : 15))
      logger.warn(`${signal}: leaving the job (send it again to exit at once)`)
      void n.leave()
    }
    process.on('SIGINT', leave)
    process.on('SIGTERM', leave)
    // NATS gone for good (the client gave up reconnecting): this node cannot take part any more.
    void nc.closed().then((e) => {
      if (e instanceof Error) n.failJob(new Error(`lost the NATS connection: ${e.message}`))
    })
    await n.start()
    const result = await n.done
    logger.info(`job ${result.status}`, { node: n.nodeId })
    return 0
  } finally {
    // drain() waits for the server: bounded, so a node cut off from NATS still exits.
    if (nc !== undefined) {
      await Promise.race([nc.drain().catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())])
      await nc.close().catch(() => {})
    }
    await store.close()
  }
}

/** NATS options from the flags; a setting that cannot work is a usage mistake. */
function natsOptions(values: Record<string, unknown>) {
  try {
    return natsConnectionOptions(natsFlagsFrom(values))
  } catch (err) {
    if (err instanceof NatsOptionError) throw new UsageError(err.message)
    throw err
  }
}

/** Connects, runs `fn`, closes: for the commands that ask running jobs (`job` true: exactly one job named). */
async function ask<T>(args: string[], fn: (nc: NatsConnection, subjects: ReturnType<typeof jobSubjects>, timeoutMs: number, prefix: string) => Promise<T>, job = true): Promise<T> {
  const { values, positionals } = parseArgs({ args, options: ASK_OPTIONS, allowPositionals: true, strict: true })
  if (job && positionals.length !== 1) throw new UsageError('name exactly one job')
  if (!job && positionals.length !== 0) throw new UsageError(`unexpected argument ${positionals[0]}`)
  const nc = await connectNats(natsOptions(values), 'weir')
  try {
    const prefix = values['subject-prefix'] ?? 'weir'
    return await fn(nc, jobSubjects(prefix, positionals[0] ?? ''), ms('timeout', values.timeout) ?? 3000, prefix)
  } finally {
    await nc.close()
  }
}

/** Heartbeats heard on `subject` for up to 1.5 s (at least three heartbeats at the default interval), by subject and node. */
async function listen(nc: NatsConnection, subject: string, timeoutMs: number): Promise<Map<string, Map<string, Heartbeat>>> {
  const seen = new Map<string, Map<string, Heartbeat>>()
  const sub = nc.subscribe(subject, {
    callback: (err, msg) => {
      const hb = err === null ? decodeHeartbeat(msg.data) : undefined
      if (hb === undefined) return
      const nodes = seen.get(msg.subject) ?? new Map<string, Heartbeat>()
      seen.set(msg.subject, nodes.set(hb.node, hb))
    },
  })
  await new Promise((r) => setTimeout(r, Math.min(timeoutMs, 1500)))
  sub.unsubscribe()
  return seen
}

/** `weir jobs`: listens to every job's heartbeats for a moment and lists the jobs heard. */
export async function jobs(args: string[]): Promise<number> {
  return await ask(
    args,
    async (nc, _subjects, timeoutMs, prefix) => {
      const seen = await listen(nc, `${prefix}.*.hb`, timeoutMs)
      if (seen.size === 0) {
        process.stderr.write(`weir: no node of any job answers on ${nc.getServer()}\n`)
        return 1
      }
      const rows = [...seen].map(([subject, nodes]) => {
        const all = [...nodes.values()]
        const coordinator = all.find((h) => h.coordinator)
        const newest = all.reduce((a, b) => (newer(b, a) ? b : a))
        return `${subject.split('.').slice(-2, -1)[0]}\t${all.length} node${all.length === 1 ? '' : 's'}\tcoordinator ${coordinator?.node ?? '(none)'}\tattempt ${newest.epoch}.${newest.attempt}\t${newest.state}\n`
      })
      for (const row of rows.sort()) process.stdout.write(row)
      return 0
    },
    false,
  )
}

/** `weir nodes <job>`: listens to heartbeats for a moment and lists the nodes heard. */
export async function nodes(args: string[]): Promise<number> {
  return await ask(args, async (nc, subjects, timeoutMs) => {
    const seen = (await listen(nc, subjects.heartbeats, timeoutMs)).get(subjects.heartbeats) ?? new Map<string, Heartbeat>()
    if (seen.size === 0) {
      process.stderr.write(`weir: no node of job ${subjects.root.split('.').slice(1).join('.')} answers on ${nc.getServer()}\n`)
      return 1
    }
    for (const hb of [...seen.values()].sort((a, b) => (a!.node < b!.node ? -1 : 1))) {
      process.stdout.write(`${hb!.node}\t${hb!.state}${hb!.coordinator ? ' coordinator' : ''}\tslots ${hb!.slots}\tattempt ${hb!.epoch}.${hb!.attempt}\t${hb!.instances.join(' ')}\n`)
    }
    return 0
  })
}

/** `weir status <job>` and `weir cancel <job>`: a request to the coordinator. */
export async function request(verb: 'status' | 'cancel', args: string[]): Promise<number> {
  return await ask(args, async (nc, subjects, timeoutMs) => {
    try {
      const reply = await nc.request(verb === 'status' ? subjects.status : subjects.cancel, new Uint8Array(0), { timeout: timeoutMs })
      process.stdout.write(`${JSON.stringify(decoder.decode(reply.data), null, 2)}\n`)
      return 0
    } catch (err) {
      process.stderr.write(`weir: no coordinator of job ${subjects.root.split('.').slice(1).join('.')} answered within ${timeoutMs} ms on ${nc.getServer()} (${(err as Error).message})\n`)
      return 1
    }
  })
}
