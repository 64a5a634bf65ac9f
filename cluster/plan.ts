/**
 * The execution plan of a job on a cluster (docs/architecture.md section 21): the parallelism each
 * operator runs at on the slots the live nodes offer, which node runs each instance, and the
 * fingerprint every node compares before it joins.
 */
import { createHash } from 'node:crypto'
import type { JobGraph, OperatorSpec } from '../actors/api/graph.ts'
import { canRescale } from '../actors/api/graph.ts'
import { messageCycles } from '../actors/runtime/messages.ts'
import { JobDefinitionError } from '../actors/errors.ts'

/** A live node as the coordinator sees it. */
export interface NodeSlots {
  node: string
  slots: number
}

/** Which node runs each instance (`operator[index]`) of an attempt, and at what parallelism. */
export interface ExecutionPlan {
  parallelism: Record<string, number>
  /** `assignments[uid][index]` = node id. */
  assignments: Record<string, string[]>
}

/**
 * Plans an attempt on `nodes` (reactive, as Flink's reactive mode): every operator that can be
 * rescaled (keyed and non-keyed process operators, rescalable sources, sinks with operator
 * state) runs one instance per slot of the cluster, at most `maxParallelism`; the others keep
 * the parallelism the job declares. Instance i of every operator goes to slot i, so instances
 * with the same index share a node and their forward edges stay in process.
 */
export function planAttempt(graph: JobGraph, nodes: readonly NodeSlots[]): ExecutionPlan {
  const slots: string[] = []
  const sorted = [...nodes].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))
  // Round robin over nodes, so a small parallelism still spreads over machines.
  for (let k = 0; slots.length < sorted.reduce((n, s) => n + s.slots, 0); k++) {
    for (const n of sorted) if (k < n.slots) slots.push(n.node)
  }
  if (slots.length === 0) throw new Error('no node with free slots')
  const parallelism: Record<string, number> = {}
  const assignments: Record<string, string[]> = {}
  for (const op of graph.operators) {
    const p = canRescale(op) ? Math.min(graph.maxParallelism, slots.length) : op.parallelism
    parallelism[op.uid] = p
    assignments[op.uid] = Array.from({ length: p }, (_, i) => slots[i % slots.length]!)
  }
  return { parallelism, assignments }
}

/**
 * The job graph at the plan's parallelism. An edge that was `forward` between operators of the
 * same parallelism becomes `rebalance` where the plan made them differ (records of a non-keyed
 * stream may go to any instance).
 */
export function withParallelism(graph: JobGraph, parallelism: Record<string, number>): JobGraph {
  const operators = graph.operators.map((o) => ({ ...o, parallelism: parallelism[o.uid] ?? o.parallelism }) as OperatorSpec)
  const p = (uid: string) => operators.find((o) => o.uid === uid)!.parallelism
  const edges = graph.edges.map((e) => (e.partitioning === 'forward' && p(e.from) !== p(e.to) ? { ...e, partitioning: 'rebalance' as const } : e))
  return { ...graph, operators, edges }
}

/**
 * What must be the same on every node of a job: per operator its kind, declared parallelism,
 * inputs and state declarations. Code is not sent between nodes, so two nodes started with
 * different job files must not work on one job.
 */
export function graphFingerprint(graph: JobGraph): { hash: string; operators: Record<string, string> } {
  const operators: Record<string, string> = {}
  for (const op of graph.operators) {
    const inputs = graph.edges
      .filter((e) => e.to === op.uid)
      .map((e) => `${e.from}>${e.input}:${e.partitioning}:${e.tag ?? ''}:${e.transforms.length}`)
      .sort()
    const states = op.kind === 'process' || op.kind === 'operator-process' ? op.states.map((s) => `${s.name}:${'kind' in s ? s.kind : ''}:${describeTtl(s)}`).sort() : []
    const extra =
      op.kind === 'process' ? `timers=${op.onTimer !== undefined} messages=${op.onMessage !== undefined} sends=${(op.sendsTo ?? []).join(',')}` : op.kind === 'source' ? `rescalable=${op.source.rescalable === true}` : ''
    const text = `${op.kind}|p=${op.parallelism}|in=${inputs.join(',')}|states=${states.join(',')}|${extra}`
    operators[op.uid] = createHash('sha256').update(text).digest('hex').slice(0, 12)
  }
  const hash = createHash('sha256')
    .update(`${graph.name}|${graph.maxParallelism}|${JSON.stringify(operators)}`)
    .digest('hex')
    .slice(0, 16)
  return { hash, operators }
}

function describeTtl(s: object): string {
  const ttl = (s as { ttl?: { ttlMs: number } }).ttl
  return ttl === undefined ? '' : `ttl${ttl.ttlMs}`
}

/** How two fingerprints differ, in words: the operators missing, added or changed. */
export function fingerprintDifference(mine: Record<string, string>, theirs: Record<string, string>): string {
  const out: string[] = []
  for (const uid of Object.keys(mine)) {
    if (!(uid in theirs)) out.push(`it has no operator ${uid}`)
    else if (mine[uid] !== theirs[uid]) out.push(`operator ${uid} differs`)
  }
  for (const uid of Object.keys(theirs)) if (!(uid in mine)) out.push(`it has an operator ${uid} this node does not`)
  return out.length === 0 ? 'the job options differ (name or maxParallelism)' : out.join('; ')
}

/**
 * Refuses what a cluster cannot run yet: message cycles end by looking at every channel between
 * two turns in one process, which across nodes needs a distributed quiescence check.
 */
export function checkClusterable(graph: JobGraph): void {
  if (messageCycles(graph).length > 0) {
    throw new JobDefinitionError('a job whose messages (ctx.send) form a cycle runs in local mode only (weir run): ending a cycle across nodes is not supported yet', graph.name, undefined)
  }
}
