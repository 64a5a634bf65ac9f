/**
 * Messages between actors (docs/architecture.md section 15): the send edges of a job graph, which
 * of them close a cycle (and so are recorded instead of aligned), and their validation.
 * The channels themselves are in message-channels.ts, the recording of cyclic ones in
 * message-recording.ts.
 */
import { describeValue, JobDefinitionError } from '../errors.ts'
import type { JobGraph, OperatorSpec } from '../api/graph.ts'

/** A declared message channel between two keyed operators. */
export interface SendEdge {
  from: string
  to: string
  /**
   * True if the edge lies on a cycle of the operator graph (graph edges and send edges; a
   * self-send is a cycle). Its channels are never held for alignment: the receiver records what
   * arrives between its snapshot and the channel's barrier (section 15).
   */
  recorded: boolean
}

/** The send edges of a graph, each marked recorded or aligned. */
export function sendEdges(graph: Pick<JobGraph, 'operators' | 'edges'>): SendEdge[] {
  const declared: { from: string; to: string }[] = []
  for (const op of graph.operators) {
    if (op.kind !== 'process' || op.sendsTo === undefined) continue
    for (const to of new Set(op.sendsTo)) declared.push({ from: op.uid, to })
  }
  if (declared.length === 0) return []
  const next = successors(graph.operators, [...graph.edges, ...declared])
  return declared.map((e) => ({ ...e, recorded: reachable(next, e.to).has(e.from) }))
}

/**
 * The groups of keyed operators that hold a recorded (cyclic) send edge: each is a strongly
 * connected component of the operator graph. Its instances cannot finish when their inputs end,
 * since messages may still circle; the executor ends them together once the group is quiet.
 */
export function messageCycles(graph: Pick<JobGraph, 'operators' | 'edges'>): string[][] {
  const sends = sendEdges(graph)
  if (!sends.some((e) => e.recorded)) return []
  const next = successors(graph.operators, [...graph.edges, ...sends])
  const reach = new Map(graph.operators.map((o) => [o.uid, reachable(next, o.uid)]))
  const groups: string[][] = []
  const placed = new Set<string>()
  for (const e of sends) {
    if (!e.recorded || placed.has(e.from)) continue
    const group = graph.operators.map((o) => o.uid).filter((u) => reach.get(e.from)!.has(u) && reach.get(u)!.has(e.from))
    for (const u of group) placed.add(u)
    groups.push(group)
  }
  return groups
}

/** True if instances of `uid` receive messages on recorded channels (their snapshots hold a `channel` chunk). */
export function receivesRecorded(graph: Pick<JobGraph, 'operators' | 'edges'>, uid: string): boolean {
  return sendEdges(graph).some((e) => e.recorded && e.to === uid)
}

function successors(operators: readonly OperatorSpec[], edges: readonly { from: string; to: string }[]): Map<string, string[]> {
  const next = new Map<string, string[]>(operators.map((o) => [o.uid, []]))
  for (const e of edges) next.get(e.from)?.push(e.to)
  return next
}

/** Operators reachable from `start` by one edge or more. */
function reachable(next: Map<string, string[]>, start: string): Set<string> {
  const seen = new Set<string>()
  const todo = [...(next.get(start) ?? [])]
  while (todo.length > 0) {
    const u = todo.pop()!
    if (seen.has(u)) continue
    seen.add(u)
    todo.push(...(next.get(u) ?? []))
  }
  return seen
}

/**
 * Checks the declared message channels of a job when its graph is taken: every `sendsTo` names a
 * keyed operator of the job that has `onMessage`, and every actor (a keyed operator without
 * inputs) is the target of some `sendsTo`.
 */
export function checkMessages(job: string, operators: readonly OperatorSpec[]): void {
  const byUid = new Map(operators.map((o) => [o.uid, o]))
  const targeted = new Set<string>()
  for (const op of operators) {
    if (op.kind !== 'process' || op.sendsTo === undefined) continue
    for (const to of op.sendsTo) {
      const target = byUid.get(to)
      if (target === undefined) {
        const keyed = operators.filter((o) => o.kind === 'process' && o.onMessage !== undefined).map((o) => o.uid)
        const known = keyed.length === 0 ? 'the job has no operator with onMessage' : `operators with onMessage: ${keyed.join(', ')}`
        throw new JobDefinitionError(`sendsTo names ${JSON.stringify(to)}, which is not an operator of the job (${known})`, job, op.uid)
      }
      if (target.kind !== 'process') throw new JobDefinitionError(`sendsTo names ${to}, a ${target.kind}; messages go to keyed operators (process or actor) only`, job, op.uid)
      if (target.onMessage === undefined) throw new JobDefinitionError(`sendsTo names ${to}, which has no onMessage; give process('${to}', { onMessage: (message, ctx) => ... }) a handler`, job, op.uid)
      targeted.add(to)
    }
  }
  for (const op of operators) {
    if (op.kind === 'process' && op.fns.length === 0 && !targeted.has(op.uid)) {
      throw new JobDefinitionError(`actor ${op.uid} has no input and no operator sends to it; add '${op.uid}' to the sendsTo of the operator that sends it messages`, job, op.uid)
    }
  }
}

/** Checks `sendsTo` as given to `process` or `actor`: a list of operator names. */
export function checkSendsTo(value: unknown, job: string, operator: string): readonly string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new JobDefinitionError(`sendsTo must be an array of operator names, e.g. sendsTo: ['inventory'], got ${describeValue(value)}`, job, operator)
  }
  return Object.freeze([...(value as string[])])
}
