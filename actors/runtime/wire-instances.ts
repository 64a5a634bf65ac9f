/**
 * Wires a job graph into this process's instances (local mode, or this node's share of a
 * cluster): the record channels and outputs of every edge, the message channels of
 * docs/architecture.md section 15, each instance opened with its source, sink or state, and the
 * watch over message cycles. Runs once per attempt, before any record.
 */
import { channelFor, type Channel } from './channel.ts'
import { connectorContext, type Instance, type InstanceHost, type InputChannel } from './instance.ts'
import { ProcessInstance } from './process-instance.ts'
import { SinkInstance } from './sink-instance.ts'
import { SourceInstance } from './source-instance.ts'
import type { SinkSpec } from '../api/graph.ts'
import { keyGroupRange } from '../state/key-groups.ts'
import { EdgeOutput } from './output.ts'
import { OperatorProcessInstance } from './operator-process-instance.ts'
import { OperatorListStates, type OperatorListStateDescriptor } from '../state/operator-state.ts'
import type { ConnectorContext } from '../connectors/types.ts'
import type { ListState } from '../api/state.ts'
import { buildMessageChannels, CycleWatch, MessageSender, type ChannelLink } from './message-channels.ts'
import { MessageRecorder } from './message-recording.ts'
import { messageCycles } from './messages.ts'
import { systemClock } from '../time/clock.ts'
import type { ExecutorOptions } from './executor-options.ts'

/** The instances of this process, in the groups the executor schedules them by. */
export interface WiredInstances {
  /** Every instance, in graph order. */
  readonly instances: Instance[]
  readonly sources: SourceInstance[]
  /** Every instance with inputs (processes and sinks), in graph order: upstream first. */
  readonly consumers: Instance[]
  /** Instances with recorded (cyclic) message inputs. */
  readonly cyclic: ProcessInstance[]
  /** Ends message cycles once they are quiet; undefined for jobs without cycles. */
  readonly cycles: CycleWatch | undefined
}

/** Builds and opens every instance of `options.graph` that runs here, reporting to `host`. */
export async function wireInstances(options: ExecutorOptions, host: InstanceHost): Promise<WiredInstances> {
  const wired = { instances: [] as Instance[], sources: [] as SourceInstance[], consumers: [] as Instance[], cyclic: [] as ProcessInstance[] }
  const { graph, tuning, mode } = options
  const clock = options.clock ?? systemClock
  // Operators downstream of a source with watermarks carry event times on their edges.
  const timed = new Set<string>()
  for (const op of graph.operators) {
    if (op.kind === 'source' ? op.watermarks !== undefined : graph.edges.some((e) => e.to === op.uid && timed.has(e.from))) timed.add(op.uid)
  }
  // channels[to][toIndex] = list of input channels of that instance
  const inputs = new Map<string, InputChannel[][]>()
  const outputs = new Map<string, EdgeOutput[][]>()
  const links: ChannelLink[] = []
  for (const op of graph.operators) {
    inputs.set(op.uid, Array.from({ length: op.parallelism }, () => []))
    outputs.set(op.uid, Array.from({ length: op.parallelism }, () => []))
  }
  const placement = options.placement
  const here = (uid: string, i: number) => placement === undefined || placement.isLocal(uid, i)
  graph.edges.forEach((edge, e) => {
    const from = graph.operators.find((o) => o.uid === edge.from)!
    const to = graph.operators.find((o) => o.uid === edge.to)!
    for (let s = 0; s < from.parallelism; s++) {
      // A forward edge connects instance s to instance s only.
      const receivers = edge.partitioning === 'forward' ? [s] : Array.from({ length: to.parallelism }, (_, r) => r)
      const targets: Channel[] = []
      for (const r of receivers) {
        const c = channelFor(placement, { kind: 'records', edge: e, from: from.uid, fromIndex: s, to: to.uid, toIndex: r }, tuning.channelCapacity)
        if (c === undefined) continue
        targets.push(c)
        if (here(to.uid, r)) inputs.get(to.uid)![r]!.push({ channel: c, input: edge.input })
        links.push({ from: from.uid, fromIndex: s, to: to.uid, channel: c })
      }
      if (here(from.uid, s)) outputs.get(from.uid)![s]!.push(new EdgeOutput(edge, targets, graph.maxParallelism, tuning.batchSize, s, timed.has(from.uid)))
    }
  })
  // Messages (section 15): aligned message inputs after the record inputs, recorded ones last.
  const messages = buildMessageChannels(graph, tuning.channelCapacity, tuning.batchSize, placement)
  links.push(...messages.links)
  for (const op of graph.operators) {
    for (let i = 0; i < op.parallelism; i++) {
      if (!here(op.uid, i)) continue
      const outs = outputs.get(op.uid)![i]!
      const ins = inputs.get(op.uid)![i]!
      const ctx = connectorContext(graph.name, op, i)
      if (op.kind === 'source') {
        const inst = new SourceInstance(op, i, outs, host, await op.source.open(ctx), clock)
        wired.sources.push(inst)
        wired.instances.push(inst)
      } else if (op.kind === 'process') {
        const messageInput = op.fns.length
        const recorded = messages.recorded.get(op.uid)?.[i] ?? []
        for (const channel of [...(messages.aligned.get(op.uid)?.[i] ?? []), ...recorded]) ins.push({ channel, input: messageInput })
        const targets = messages.outputs.get(op.uid)?.[i]
        const inst = new ProcessInstance(op, i, ins, outs, host, mode, keyGroupRange(i, op.parallelism, graph.maxParallelism), options.strictState === true, clock, {
          sender: targets === undefined ? undefined : new MessageSender(op.uid, targets),
          recorder: recorded.length === 0 ? undefined : new MessageRecorder(recorded.length, op.uid),
        })
        if (recorded.length > 0) wired.cyclic.push(inst)
        wired.consumers.push(inst)
        wired.instances.push(inst)
      } else {
        const inst =
          op.kind === 'operator-process'
            ? new OperatorProcessInstance(op, i, ins, outs, host, mode, options.strictState === true)
            : await openSink(options, host, op, i, ins, ctx)
        wired.consumers.push(inst)
        wired.instances.push(inst)
      }
    }
  }
  const cycles = messageCycles(graph)
  return { ...wired, cycles: cycles.length > 0 ? new CycleWatch(cycles, links, wired.instances, wired.cyclic) : undefined }
}

/** Opens a sink instance's writer, with handles to its operator lists if it declares any. */
async function openSink(options: ExecutorOptions, host: InstanceHost, op: SinkSpec, i: number, ins: InputChannel[], ctx: ConnectorContext): Promise<SinkInstance> {
  const declared = op.sink.operatorState ?? []
  if (declared.length === 0) return new SinkInstance(op, i, ins, host, options.mode, await op.sink.open(ctx))
  const lists = new OperatorListStates(declared, op.uid, options.strictState === true)
  const operatorState = <T>(d: OperatorListStateDescriptor<T>): ListState<T> => lists.handle(d as OperatorListStateDescriptor<unknown>) as ListState<T>
  return new SinkInstance(op, i, ins, host, options.mode, await op.sink.open({ ...ctx, operatorState }), lists)
}
