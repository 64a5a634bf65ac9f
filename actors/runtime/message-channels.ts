/**
 * Message channels (docs/architecture.md section 15): the sending side behind `ctx.send`, the
 * channels of every declared send edge, and the watch that ends a message cycle once it is quiet.
 *
 * A keyed operator that declares `sendsTo: ['b']` gets one channel per (its instance, instance
 * of `b`); `ctx.send('b', key, message)` computes the key's group and instance, as a hash edge
 * does, and batches the message on that channel.
 */
import { channelFor, type BarrierItem, type Channel, type EndItem, type Placement } from './channel.ts'
import { describeValue, JobDefinitionError } from '../errors.ts'
import type { JobGraph, ProcessSpec } from '../api/graph.ts'
import { hashKey, instanceOfKeyGroup, isKey, type Key } from '../state/key-groups.ts'
import { sendEdges } from './messages.ts'

/**
 * The sending side of one send edge at one instance: a channel per receiving instance, records
 * batched per channel with their key and key group (as a hash edge does).
 */
export class MessageOutput {
  private readonly records: unknown[][]
  private readonly keys: Key[][]
  private readonly groups: number[][]
  private readonly counts: number[]

  constructor(
    readonly target: ProcessSpec,
    private readonly channels: readonly Channel[],
    /** Recorded channels always accept (section 15): a cycle never waits on itself. */
    readonly recorded: boolean,
    private readonly maxParallelism: number,
    private readonly batchSize: number,
  ) {
    const n = channels.length
    this.records = Array.from({ length: n }, () => [])
    this.keys = Array.from({ length: n }, () => [])
    this.groups = Array.from({ length: n }, () => [])
    this.counts = new Array<number>(n).fill(0)
  }

  send(key: Key, message: unknown): void {
    const group = hashKey(key) % this.maxParallelism
    const p = this.channels.length
    const t = p === 1 ? 0 : instanceOfKeyGroup(group, p, this.maxParallelism)
    const i = this.counts[t]!
    this.records[t]![i] = message
    this.keys[t]![i] = key
    this.groups[t]![i] = group
    if ((this.counts[t] = i + 1) === this.batchSize) this.flushTo(t)
  }

  private flushTo(t: number): void {
    if (this.counts[t] === 0) return
    this.channels[t]!.push({ type: 'records', records: this.records[t]!, keys: this.keys[t]!, groups: this.groups[t]! })
    this.records[t] = []
    this.keys[t] = []
    this.groups[t] = []
    this.counts[t] = 0
  }

  /** Sends every buffered message. */
  flush(): void {
    for (let t = 0; t < this.channels.length; t++) this.flushTo(t)
  }

  /** Sends buffered messages, then a barrier or end to every receiver, in order. */
  broadcast(item: BarrierItem | EndItem): void {
    this.flush()
    for (const c of this.channels) c.push(item)
  }

  /** True if the sender may go on: always for recorded channels, else if every receiver can take more. */
  hasCredit(): boolean {
    if (this.recorded) return true
    for (const c of this.channels) if (!c.hasCredit()) return false
    return true
  }
}

/** The message outputs of one instance, by target operator, behind `ctx.send`. */
export class MessageSender {
  constructor(
    private readonly operator: string,
    readonly outputs: ReadonlyMap<string, MessageOutput>,
  ) {}

  send(target: string, key: Key, message: unknown): void {
    const out = this.outputs.get(target)
    if (out === undefined) throw undeclaredTarget(this.operator, target, [...this.outputs.keys()])
    if (typeof key !== 'string' && !isKey(key)) {
      throw new TypeError(`ctx.send(${JSON.stringify(target)}, key, message): the key is ${describeValue(key)} (${typeof key}); keys are strings, finite numbers or bigints`)
    }
    out.send(key, message)
  }

  flush(): void {
    for (const o of this.outputs.values()) o.flush()
  }

  broadcast(item: BarrierItem | EndItem): void {
    for (const o of this.outputs.values()) o.broadcast(item)
  }

  hasCredit(): boolean {
    for (const o of this.outputs.values()) if (!o.hasCredit()) return false
    return true
  }
}

/** `ctx.send` to an operator the sender did not declare: a definition mistake, found at run time. */
export function undeclaredTarget(operator: string, target: unknown, declared: readonly string[]): JobDefinitionError {
  const list = declared.length === 0 ? 'it declares none' : `it declares ${declared.join(', ')}`
  return new JobDefinitionError(
    `ctx.send(${describeValue(target)}, ...): declare the target in process('${operator}', { sendsTo: [...] }) (${list}), so the job graph knows the channel`,
    undefined,
    operator,
  )
}

/** One channel and the instances at its ends, for the cycle watch. */
export interface ChannelLink {
  from: string
  fromIndex: number
  to: string
  channel: Channel
}

/** The message channels of a job attempt, per operator and instance. */
export interface MessageChannels {
  /** `outputs.get(uid)[i]`: instance i's message outputs by target. */
  outputs: Map<string, Map<string, MessageOutput>[]>
  /** `aligned.get(uid)[i]`: instance i's message input channels that are aligned like records. */
  aligned: Map<string, Channel[][]>
  /** `recorded.get(uid)[i]`: instance i's message input channels that close a cycle. */
  recorded: Map<string, Channel[][]>
  links: ChannelLink[]
}

/**
 * Builds a channel per (sender instance, receiver instance) of every declared send edge; with a
 * placement, only those with an end in this process.
 */
export function buildMessageChannels(graph: JobGraph, capacity: number, batchSize: number, placement?: Placement): MessageChannels {
  const out: MessageChannels = { outputs: new Map(), aligned: new Map(), recorded: new Map(), links: [] }
  const spec = (uid: string) => graph.operators.find((o) => o.uid === uid) as ProcessSpec
  const perInstance = <T>(map: Map<string, T[]>, uid: string, make: () => T): T[] => {
    let list = map.get(uid)
    if (list === undefined) map.set(uid, (list = Array.from({ length: spec(uid).parallelism }, make)))
    return list
  }
  sendEdges(graph).forEach((edge, e) => {
    const from = spec(edge.from)
    const to = spec(edge.to)
    for (let s = 0; s < from.parallelism; s++) {
      const channels: Channel[] = []
      for (let r = 0; r < to.parallelism; r++) {
        const channel = channelFor(placement, { kind: 'messages', edge: e, from: from.uid, fromIndex: s, to: to.uid, toIndex: r }, capacity)
        if (channel === undefined) continue
        channels.push(channel)
        if (placement === undefined || placement.isLocal(to.uid, r)) perInstance(edge.recorded ? out.recorded : out.aligned, to.uid, () => [])[r]!.push(channel)
        out.links.push({ from: from.uid, fromIndex: s, to: to.uid, channel })
      }
      if (placement !== undefined && !placement.isLocal(from.uid, s)) continue
      perInstance(out.outputs, from.uid, () => new Map())[s]!.set(to.uid, new MessageOutput(to, channels, edge.recorded, graph.maxParallelism, batchSize))
    }
  })
  return out
}

/** What the cycle watch needs of an instance. */
export interface CycleMember {
  readonly spec: { uid: string }
  readonly index: number
  readonly finished: boolean
  /** Work the instance holds outside its channels (restored messages not yet processed). */
  readonly idle: boolean
  /** Fires the event-time timers left once the cycle is quiet; returns how many fired. */
  fireFinalTimers(): number
  endMessages(): void
}

interface CycleGroup {
  /** Instances with recorded inputs: they wait for the group to end. */
  members: CycleMember[]
  /** Channels between instances of the group. */
  internal: Channel[]
  /** Channels into the group, with their senders. */
  external: { sender: { readonly finished: boolean }; channel: Channel }[]
  ended: boolean
}

/**
 * Ends message cycles (docs/architecture.md section 15, termination). An instance on a cycle
 * cannot finish when its inputs end, since messages may still circle. In local mode the executor
 * sees every channel at once between two turns: once every channel into a group ended and was
 * read, every channel inside it is empty and no member holds work, no message can appear any
 * more, and the group's recorded channels end, so its instances finish.
 */
export class CycleWatch {
  private readonly groups: CycleGroup[]

  constructor(
    cycles: readonly string[][],
    links: readonly ChannelLink[],
    instances: readonly Pick<CycleMember, 'spec' | 'index' | 'finished'>[],
    /** Instances that have recorded inputs. */
    waiting: readonly CycleMember[],
  ) {
    const byId = new Map(instances.map((i) => [`${i.spec.uid}[${i.index}]`, i]))
    this.groups = cycles.map((ops) => {
      const inside = new Set(ops)
      const g: CycleGroup = { members: waiting.filter((m) => inside.has(m.spec.uid)), internal: [], external: [], ended: false }
      for (const l of links) {
        if (!inside.has(l.to)) continue
        if (inside.has(l.from)) g.internal.push(l.channel)
        else g.external.push({ sender: byId.get(`${l.from}[${l.fromIndex}]`)!, channel: l.channel })
      }
      return g
    })
  }

  /** Ends every group that went quiet (after its last event-time timers fired); returns true if it did any work. */
  tend(): boolean {
    let ended = false
    for (const g of this.groups) {
      if (g.ended || !quiet(g)) continue
      // Event-time timers left fire first, as at a final watermark; what they send keeps the group going.
      let fired = 0
      for (const m of g.members) fired += m.fireFinalTimers()
      if (fired > 0) {
        ended = true
        continue
      }
      g.ended = ended = true
      for (const m of g.members) m.endMessages()
    }
    return ended
  }
}

function quiet(g: CycleGroup): boolean {
  for (const e of g.external) if (!e.sender.finished || e.channel.length > 0) return false
  for (const c of g.internal) if (c.length > 0) return false
  for (const m of g.members) if (!m.idle) return false
  return true
}
