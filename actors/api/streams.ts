/**
 * The job builder: the programming model of docs/architecture.md section 2. It only describes a job (a
 * graph of operators); `runJob` executes it.
 *
 * Why this file is long (~600 lines): the builder and its six stream classes (Stream,
 * KeyedStream, ConnectedKeyedStreams, WindowedStream, BroadcastStream, BroadcastConnectedStream)
 * create and return one another, so any split of them is an import circle. What can stand alone
 * lives elsewhere: the types in contexts.ts, graph.ts and options.ts, the window and machine
 * operators in time/ and machines/, their checks beside them. Most of the length is TSDoc.
 */
import type { Source, Sink } from '../connectors/types.ts'
import { JobDefinitionError, rejectAsync } from '../errors.ts'
import { DEFAULT_MAX_PARALLELISM, type Key } from '../state/key-groups.ts'
import { checkMessages, checkSendsTo } from '../runtime/messages.ts'
import { isStateDescriptor, type MapStateDescriptor, type StateDescriptor } from './state.ts'
import { checkBroadcastStates } from '../state/broadcast-state.ts'
import type { BroadcastProcessFunctions, MessageHandler, ProcessFunction } from './contexts.ts'
import type { BroadcastSpec, EdgeSpec, JobGraph, OperatorSpec, ProcessSpec, SourceSpec, Transform } from './graph.ts'
import type { ActorOptions, BroadcastProcessOptions, JobOptions, OperatorOptions, ProcessOptions, SourceOptions } from './options.ts'
import { checkOperatorStates, checkSinkStates, type OperatorProcessFunction, type OperatorProcessOptions } from '../state/operator-state.ts'
import { checkAssigner, checkLateness, checkLateOutput, windowContents, windowProcess } from '../time/window-operator.ts'
import type { WindowAggregator, WindowContents, WindowFunction, WindowOptions, WindowResult } from '../time/window-spec.ts'
import type { WindowAssigner } from '../time/windows.ts'
import { machineProcess, type MachineOptions } from '../machines/keyed-machine.ts'
import type { AnyStateMachine } from 'xstate'
import { isOutputTag, type OutputTag } from './side-outputs.ts'
import { isWatermarkStrategy, type WatermarkStrategy } from '../time/watermarks.ts'

/** What `process` and `actor` pass on about messages. */
interface MessageOptions {
  onMessage: unknown
  sendsTo: unknown
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/

interface Branch {
  from: string
  transforms: readonly Transform[]
  /** A side output of `from`. */
  tag?: string
}

/** Builds a job. Create one with {@link job}. */
export class JobBuilder {
  private readonly operators: OperatorSpec[] = []
  private readonly edges: EdgeSpec[] = []
  private transformCount = 0
  readonly maxParallelism: number
  readonly parallelism: number

  constructor(
    readonly name: string,
    options: JobOptions,
  ) {
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new JobDefinitionError(`job name must match ${NAME} (letters, digits, _ . -), got ${JSON.stringify(name)}`)
    }
    if (typeof options !== 'object' || options === null) throw new JobDefinitionError('job options must be an object', name)
    for (const k of Object.keys(options)) {
      if (k !== 'maxParallelism' && k !== 'parallelism') throw new JobDefinitionError(`unknown job option ${k} (known: maxParallelism, parallelism)`, name)
    }
    this.maxParallelism = this.positiveInt('maxParallelism', options.maxParallelism ?? DEFAULT_MAX_PARALLELISM, 32768)
    this.parallelism = this.positiveInt('parallelism', options.parallelism ?? 1, this.maxParallelism)
  }

  /**
   * Adds a source.
   * @example
   * const payments = job('payments').source('in', ndjsonSource<Payment>({ path: 'payments.ndjson' }))
   */
  source<T>(name: string, source: Source<T>, options: SourceOptions<T> = {}): Stream<T> {
    if (typeof source?.open !== 'function') throw new JobDefinitionError('source needs an object with open(), e.g. generatorSource(...)', this.name, name)
    const { watermarks, ...rest } = (options ?? {}) as SourceOptions<T>
    if (watermarks !== undefined && !isWatermarkStrategy(watermarks)) throw new JobDefinitionError('watermarks must come from boundedOutOfOrderness({ timestamp, maxOutOfOrdernessMs })', this.name, name)
    const spec: SourceSpec = { kind: 'source', uid: this.checkName(name), parallelism: this.parallelismOf(name, rest), source: source as Source<unknown> }
    if (watermarks !== undefined) spec.watermarks = watermarks as WatermarkStrategy<unknown>
    this.add(spec)
    return new Stream<T>(this, [{ from: name, transforms: [] }])
  }

  /**
   * Adds an actor: a keyed operator without inputs, reached only by messages that other keyed
   * operators send it with `ctx.send` (they list it in their `sendsTo`). Its `onMessage` runs
   * once per message with `ctx` bound to the message's key and state; it may `emit` (the stream
   * returned) and `send` in turn, to itself too.
   * @example
   * const stock = valueState<number>('stock', { default: 100 })
   * const j = job('shop')
   * j.source('orders', ordersSource)
   *   .keyBy((o) => o.id)
   *   .process('orders', { sendsTo: ['inventory'] }, (o, ctx) => ctx.send('inventory', o.sku, o.quantity))
   * j.actor<number>('inventory', { state: { stock }, onMessage: (quantity, ctx) => {
   *   const s = ctx.state(stock)
   *   s.update(s.value() - quantity)
   * } })
   */
  actor<M = unknown, K extends Key = Key, OUT = never>(name: string, options: ActorOptions<M, K, OUT>): Stream<OUT> {
    if (typeof options !== 'object' || options === null) throw new JobDefinitionError('actor needs options with onMessage, e.g. { onMessage: (message, ctx) => ... }', this.name, name)
    const { state, onMessage, sendsTo, ...rest } = options
    if (typeof onMessage !== 'function') throw new JobDefinitionError('an actor needs onMessage: (message, ctx) => void; it has no other input', this.name, name)
    this.addProcess(name, state, [], rest, [], { onMessage, sendsTo })
    return new Stream<OUT>(this, [{ from: name, transforms: [] }])
  }

  /** The job as data, checked. */
  graph(): JobGraph {
    if (!this.operators.some((o) => o.kind === 'source')) throw new JobDefinitionError('a job needs at least one source', this.name)
    checkMessages(this.name, this.operators)
    return { name: this.name, maxParallelism: this.maxParallelism, operators: [...this.operators], edges: [...this.edges] }
  }

  /** @internal */
  isProcess(uid: string): boolean {
    return this.operators.some((o) => o.uid === uid && o.kind === 'process')
  }

  /** @internal */
  nextTransformName(kind: string): string {
    return `${kind}-${++this.transformCount}`
  }

  /** @internal */
  addProcess(name: string, states: unknown, fns: ProcessSpec['fns'], options: OperatorOptions & { onTimer?: unknown; lateRecords?: unknown }, inputs: { branches: Branch[]; keySelector: (r: unknown) => Key }[], messages?: MessageOptions): void {
    const uid = this.checkName(name)
    const declared: StateDescriptor[] = []
    if (states !== undefined) {
      if (typeof states !== 'object' || states === null) throw new JobDefinitionError('state must be an object of state descriptors, e.g. { state: { count } }', this.name, name)
      for (const [k, d] of Object.entries(states)) {
        if (!isStateDescriptor(d)) throw new JobDefinitionError(`state.${k} is not a state descriptor (use valueState(), listState(), ...)`, this.name, name)
        if (declared.some((o) => o.name === d.name)) throw new JobDefinitionError(`two states are named ${d.name}`, this.name, name)
        declared.push(d)
      }
    }
    for (const fn of fns) {
      if (typeof fn !== 'function') throw new JobDefinitionError('process needs a function (record, ctx) => void', this.name, name)
      rejectAsync(fn, 'the process function', this.name, name)
    }
    const { onTimer, lateRecords, ...rest } = options ?? {}
    if (onTimer !== undefined) {
      if (typeof onTimer !== 'function') throw new JobDefinitionError('onTimer must be a function (time, ctx) => void', this.name, name)
      rejectAsync(onTimer, 'onTimer', this.name, name)
    }
    if (lateRecords !== undefined && lateRecords !== 'process' && lateRecords !== 'drop' && !isOutputTag(lateRecords)) {
      throw new JobDefinitionError(`lateRecords must be 'process', 'drop' or an outputTag(...), got ${String(lateRecords)}`, this.name, name)
    }
    if (isOutputTag(lateRecords)) this.checkTag(lateRecords)
    const parallelism = this.parallelismOf(name, rest)
    const spec: ProcessSpec = { kind: 'process', uid, parallelism, states: declared, fns }
    if (onTimer !== undefined) spec.onTimer = onTimer as ProcessSpec['onTimer']
    if (lateRecords !== undefined && lateRecords !== 'process') spec.lateRecords = lateRecords as ProcessSpec['lateRecords']
    if (messages?.onMessage !== undefined) {
      if (typeof messages.onMessage !== 'function') throw new JobDefinitionError('onMessage must be a function (message, ctx) => void', this.name, name)
      rejectAsync(messages.onMessage, 'onMessage', this.name, name)
      spec.onMessage = messages.onMessage as MessageHandler<unknown, Key, unknown>
    }
    const sendsTo = checkSendsTo(messages?.sendsTo, this.name, name)
    if (sendsTo !== undefined) spec.sendsTo = sendsTo
    this.add(spec)
    inputs.forEach((input, i) =>
      input.branches.forEach((b) =>
        this.edges.push({ from: b.from, to: uid, input: i as 0 | 1, ...(b.tag === undefined ? {} : { tag: b.tag }), partitioning: 'hash', keySelector: input.keySelector, transforms: b.transforms }),
      ),
    )
  }

  /** @internal A keyed process whose input 1 is a broadcast stream (actors/state/broadcast-state.ts). */
  addBroadcastProcess(
    name: string,
    options: ProcessOptions,
    fns: BroadcastProcessFunctions<unknown, unknown, Key, unknown>,
    keyed: { branches: Branch[]; keySelector: (r: unknown) => Key },
    broadcast: BroadcastStream<unknown>,
  ): Stream<unknown> {
    if (broadcast.job !== this) throw new JobDefinitionError('connect of streams from different jobs', this.name, name)
    if (typeof fns !== 'object' || fns === null) throw new JobDefinitionError('a process connected to a broadcast stream needs { processElement, processBroadcast }', this.name, name)
    for (const f of ['processElement', 'processBroadcast'] as const) {
      if (typeof fns[f] !== 'function') throw new JobDefinitionError(`${f} must be a function (record, ctx) => void`, this.name, name)
      rejectAsync(fns[f], `the ${f} function`, this.name, name)
    }
    const { state, ...rest } = options ?? {}
    // Messages would arrive on the input after the keyed one, which is the broadcast input here.
    for (const k of ['onMessage', 'sendsTo'] as const) {
      if (rest[k] !== undefined) throw new JobDefinitionError(`${k} is not supported yet on a process connected to a broadcast stream`, this.name, name)
    }
    for (const d of Object.values((state ?? {}) as Record<string, { name?: unknown }>)) {
      if (broadcast.states.some((b) => b.name === d?.name)) throw new JobDefinitionError(`state ${String(d?.name)} is declared both as keyed state and as broadcast state; give them different names`, this.name, name)
    }
    const processElement = fns.processElement.bind(fns) as ProcessSpec['fns'][number]
    this.addProcess(name, state, [processElement], rest, [keyed])
    const spec = this.operators.at(-1) as ProcessSpec
    spec.broadcast = { states: broadcast.states, fn: fns.processBroadcast.bind(fns) as BroadcastSpec['fn'] }
    for (const b of broadcast.branches) this.edges.push({ from: b.from, to: name, input: 1, partitioning: 'broadcast', keySelector: undefined, transforms: b.transforms })
    return new Stream<unknown>(this, [{ from: name, transforms: [] }])
  }

  /** @internal A non-keyed process with operator list state (actors/state/operator-state.ts). */
  addOperatorProcess(name: string, options: OperatorProcessOptions, fn: OperatorProcessFunction<unknown, unknown>, branches: Branch[]): void {
    const uid = this.checkName(name)
    const { state, ...rest } = options ?? {}
    const states = checkOperatorStates(state, this.name, name)
    if (typeof fn !== 'function') throw new JobDefinitionError('process needs a function (record, ctx) => void', this.name, name)
    rejectAsync(fn, 'the process function', this.name, name)
    const parallelism = this.parallelismOf(name, rest)
    this.add({ kind: 'operator-process', uid, parallelism, states, fn })
    this.connectUnkeyed(uid, parallelism, branches)
  }

  /** @internal */
  addSink(name: string, sink: Sink<unknown>, options: OperatorOptions, branches: Branch[]): void {
    if (typeof sink?.open !== 'function') throw new JobDefinitionError('sink needs an object with open(), e.g. stdoutSink()', this.name, name)
    checkSinkStates(sink.operatorState, this.name, name)
    const uid = this.checkName(name)
    const parallelism = this.parallelismOf(name, options)
    this.add({ kind: 'sink', uid, parallelism, sink })
    this.connectUnkeyed(uid, parallelism, branches)
  }

  /** Edges into a non-keyed operator: forward from an upstream of the same parallelism, else rebalance. */
  private connectUnkeyed(uid: string, parallelism: number, branches: Branch[]): void {
    for (const b of branches) {
      const upstream = this.operators.find((o) => o.uid === b.from)!
      const partitioning = upstream.parallelism === parallelism ? 'forward' : 'rebalance'
      this.edges.push({ from: b.from, to: uid, input: 0, ...(b.tag === undefined ? {} : { tag: b.tag }), partitioning, keySelector: undefined, transforms: b.transforms })
    }
  }

  private readonly tags = new Map<string, OutputTag<unknown>>()

  /** @internal Throws if another tag object has the same id. */
  checkTag(tag: OutputTag<unknown>): void {
    const known = this.tags.get(tag.id)
    if (known !== undefined && known !== tag) throw new JobDefinitionError(`two different output tags have the id ${tag.id}; create the tag once and share it`, this.name)
    this.tags.set(tag.id, tag)
  }

  /** @internal */
  addSideOutput(from: string, tag: OutputTag<unknown>): Branch {
    this.checkTag(tag)
    return { from, transforms: [], tag: tag.id }
  }

  private add(op: OperatorSpec): void {
    this.operators.push(op)
  }

  private checkName(name: string): string {
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new JobDefinitionError(`operator name must match ${NAME}, got ${JSON.stringify(name)}`, this.name)
    }
    if (this.operators.some((o) => o.uid === name)) throw new JobDefinitionError(`two operators are named ${name}; names are the stable ids of state`, this.name)
    return name
  }

  private parallelismOf(name: string, options: OperatorOptions): number {
    if (typeof options !== 'object' || options === null) throw new JobDefinitionError('options must be an object', this.name, name)
    for (const k of Object.keys(options)) {
      if (k !== 'parallelism') throw new JobDefinitionError(`unknown option ${k} (known: parallelism; state, onTimer, lateRecords, onMessage, sendsTo for process; watermarks for source)`, this.name, name)
    }
    return this.positiveInt(`${name}.parallelism`, options.parallelism ?? this.parallelism, this.maxParallelism)
  }

  private positiveInt(what: string, value: unknown, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
      throw new JobDefinitionError(`${what} must be an integer from 1 to ${max}, got ${String(value)}`, this.name)
    }
    return value
  }
}

/** A stream of records, not partitioned by key. */
export class Stream<T> {
  /** @internal */
  constructor(
    readonly job: JobBuilder,
    /** @internal */ readonly branches: Branch[],
  ) {}

  private chain<U>(t: Transform): Stream<U> {
    if (typeof t.fn !== 'function') throw new JobDefinitionError(`${t.kind} needs a function`, this.job.name, t.name)
    rejectAsync(t.fn, `the ${t.kind} function`, this.job.name, t.name)
    return new Stream<U>(this.job, this.branches.map((b) => ({ ...b, transforms: [...b.transforms, t] })))
  }

  /** Transforms every record. `fn` must be synchronous (see {@link ProcessFunction}). */
  map<U>(fn: (record: T) => U, name = this.job.nextTransformName('map')): Stream<U> {
    return this.chain({ kind: 'map', name, fn: fn as (r: unknown) => unknown })
  }

  /** Keeps the records for which `fn` is true. `fn` must be synchronous. */
  filter(fn: (record: T) => boolean, name = this.job.nextTransformName('filter')): Stream<T> {
    return this.chain({ kind: 'filter', name, fn: fn as (r: unknown) => boolean })
  }

  /** Emits zero or more records per record, by calling `out` before it returns. `fn` must be synchronous. */
  flatMap<U>(fn: (record: T, out: (record: U) => void) => void, name = this.job.nextTransformName('flatMap')): Stream<U> {
    return this.chain({ kind: 'flatMap', name, fn: fn as (r: unknown, out: (u: unknown) => void) => void })
  }

  /**
   * The records the operator of this stream sent to side output `tag` (`ctx.output(tag, r)`).
   * Only on the stream returned by a keyed `process`.
   * @example
   * const alerts = outputTag<Alert>('alerts')
   * const totals = payments.keyBy((p) => p.account).process('totals', {}, (p, ctx) => { ctx.output(alerts, { ... }) })
   * totals.sideOutput(alerts).sink('alerts', stdoutSink())
   */
  sideOutput<S>(tag: OutputTag<S>): Stream<S> {
    if (!isOutputTag(tag)) throw new JobDefinitionError('sideOutput needs a tag from outputTag(id)', this.job.name)
    const b = this.branches[0]
    if (this.branches.length !== 1 || b!.transforms.length > 0 || b!.tag !== undefined || !this.job.isProcess(b!.from)) {
      throw new JobDefinitionError('sideOutput is only on the stream a keyed process returns (before map, filter, union, ...)', this.job.name)
    }
    return new Stream<S>(this.job, [this.job.addSideOutput(b!.from, tag as OutputTag<unknown>)])
  }

  /** Merges streams of the same type into one. */
  union(...others: Stream<T>[]): Stream<T> {
    for (const o of others) if (o.job !== this.job) throw new JobDefinitionError('union of streams from different jobs', this.job.name)
    return new Stream<T>(this.job, [...this.branches, ...others.flatMap((o) => o.branches)])
  }

  /**
   * Partitions the stream by key: every record of a key goes to the same instance, which keeps
   * that key's state. Keys are strings, finite numbers or bigints. The selector must be
   * synchronous and must not throw; an `async` one is refused here.
   */
  keyBy<K extends Key>(selector: (record: T) => K): KeyedStream<T, K> {
    if (typeof selector !== 'function') throw new JobDefinitionError('keyBy needs a key selector function', this.job.name)
    rejectAsync(selector, 'the key selector of keyBy', this.job.name)
    return new KeyedStream<T, K>(this.job, this.branches, selector as (r: unknown) => K)
  }

  /**
   * A non-keyed operator: `fn` runs once per record, with operator list state (a list per
   * instance, redistributed when the parallelism changes across a restore). Records come from
   * upstream forward if the parallelism is the same, else round-robin.
   * @example
   * const seen = operatorListState<number>('seen')
   * stream.process('tally', { state: { seen }, parallelism: 2 }, (r, ctx) => {
   *   ctx.state(seen).add(r.seq)
   *   ctx.emit(r)
   * })
   */
  process<OUT>(name: string, options: OperatorProcessOptions, fn: OperatorProcessFunction<T, OUT>): Stream<OUT> {
    this.job.addOperatorProcess(name, options, fn as OperatorProcessFunction<unknown, unknown>, this.branches)
    return new Stream<OUT>(this.job, [{ from: name, transforms: [] }])
  }

  /**
   * Broadcasts the stream: connected to a keyed stream (`keyed.connect(broadcastStream)`), every
   * record reaches every instance of the keyed operator, whose `processBroadcast` keeps it in
   * the given map states.
   * @example
   * const rules = mapState<string, Rule>('rules')
   * const ruleStream = j.source('rules', rulesSource).broadcast(rules)
   */
  broadcast(...states: MapStateDescriptor<unknown, unknown>[]): BroadcastStream<T> {
    return new BroadcastStream<T>(this.job, this.branches, checkBroadcastStates(states, this.job.name))
  }

  /** Sends the stream to a sink. Returns the job, so a one-chain job can be exported directly. */
  sink(name: string, sink: Sink<T>, options: OperatorOptions = {}): JobBuilder {
    this.job.addSink(name, sink as Sink<unknown>, options, this.branches)
    return this.job
  }
}

/** A stream partitioned by key. */
export class KeyedStream<T, K extends Key> {
  /** @internal */
  constructor(
    readonly job: JobBuilder,
    /** @internal */ readonly branches: Branch[],
    /** @internal */ readonly keySelector: (r: unknown) => K,
  ) {}

  /**
   * A keyed operator: `fn` runs once per record with the record's key and keyed state.
   * @example
   * const total = valueState<number>('total', { default: 0 })
   * stream.keyBy((p) => p.account).process('totals', { state: { total } }, (p, ctx) => {
   *   const t = ctx.state(total)
   *   t.update(t.value() + p.amount)
   *   ctx.emit({ account: ctx.key, total: t.value() })
   * })
   */
  process<OUT>(
    name: string,
    options: ProcessOptions<K, OUT, T>,
    fn: ProcessFunction<T, K, OUT>,
  ): Stream<OUT> {
    const { state, onMessage, sendsTo, ...rest } = options ?? {}
    this.job.addProcess(name, state, [fn as ProcessSpec['fns'][number]], rest as OperatorOptions, [{ branches: this.branches, keySelector: this.keySelector }], { onMessage, sendsTo })
    return new Stream<OUT>(this.job, [{ from: name, transforms: [] }])
  }

  /**
   * A keyed machine: an XState v5 machine per key, its persisted snapshot kept as the key's state.
   * Each record is an event; events the machine `emit`s are the output; its delays (`after`)
   * are durable timers that survive restores (docs/architecture.md section 19).
   * @example
   * const logins = setup({}).createMachine({ ... emit({ type: 'suspicious-login' }) ... })
   * events.keyBy((e) => e.account).machine('login-patterns', logins, { delays: 'event-time' })
   */
  machine<OUT = { key: K; type: string }>(name: string, machine: AnyStateMachine, options: MachineOptions<T, K, OUT> = {}): Stream<OUT> {
    const operator = machineProcess(this.job.name, name, machine, options)
    return this.process(name, operator.options, operator.fn)
  }

  /**
   * Groups each key's records into time windows (see `actors/time/windows.ts` for the assigners); end
   * with `reduce`, `aggregate` or `process` on the returned stream.
   * @example
   * payments.keyBy((p) => p.account)
   *   .window(tumblingEventTimeWindows(3_600_000))
   *   .aggregate('hourly', { createAccumulator: () => 0, add: (sum, p) => sum + p.cents, getResult: (sum) => sum })
   */
  window(assigner: WindowAssigner): WindowedStream<T, K> {
    return new WindowedStream(this, assigner)
  }

  /**
   * Connects two keyed streams with the same key type into one keyed operator with two inputs;
   * or, given a broadcast stream, a keyed operator that also gets every broadcast record on every
   * instance (see {@link BroadcastConnectedStream.process}).
   */
  connect<T2>(other: KeyedStream<T2, K>): ConnectedKeyedStreams<T, T2, K>
  connect<B>(other: BroadcastStream<B>): BroadcastConnectedStream<T, B, K>
  connect<T2>(other: KeyedStream<T2, K> | BroadcastStream<T2>): ConnectedKeyedStreams<T, T2, K> | BroadcastConnectedStream<T, T2, K> {
    if (other?.job !== this.job) throw new JobDefinitionError('connect of streams from different jobs', this.job.name)
    if (other instanceof BroadcastStream) return new BroadcastConnectedStream<T, T2, K>(this.job, this, other)
    return new ConnectedKeyedStreams(this, other)
  }
}

/** Two keyed streams processed by one operator that shares keyed state between them. */
export class ConnectedKeyedStreams<T1, T2, K extends Key> {
  /** @internal */
  constructor(
    private readonly first: KeyedStream<T1, K>,
    private readonly second: KeyedStream<T2, K>,
  ) {}

  /** `fns.first` handles records of the first stream, `fns.second` those of the second. */
  process<OUT>(
    name: string,
    options: ProcessOptions<K, OUT, T1 | T2>,
    fns: { first: ProcessFunction<T1, K, OUT>; second: ProcessFunction<T2, K, OUT> },
  ): Stream<OUT> {
    const { state, onMessage, sendsTo, ...rest } = options ?? {}
    const job = this.first.job
    job.addProcess(name, state, [fns?.first as ProcessSpec['fns'][number], fns?.second as ProcessSpec['fns'][number]], rest as OperatorOptions, [
      { branches: this.first.branches, keySelector: this.first.keySelector },
      { branches: this.second.branches, keySelector: this.second.keySelector },
    ], { onMessage, sendsTo })
    return new Stream<OUT>(job, [{ from: name, transforms: [] }])
  }
}

/**
 * Starts a job definition.
 * @example
 * export default job('payments', { maxParallelism: 128 })
 *   .source('in', generatorSource({ records: 1000, keys: 10 }))
 *   .keyBy((r) => r.key)
 *   .process('count', { state: { count } }, (r, ctx) => { ... })
 *   .sink('out', stdoutSink())
 */
export function job(name: string, options: JobOptions = {}): JobBuilder {
  return new JobBuilder(name, options)
}

/**
 * A keyed stream grouped into windows. Made by `keyedStream.window(assigner)`; ends with
 * {@link WindowedStream.reduce}, {@link WindowedStream.aggregate} or {@link WindowedStream.process}.
 */
export class WindowedStream<T, K extends Key> {
  /** @internal */
  constructor(
    private readonly keyed: KeyedStream<T, K>,
    readonly assigner: WindowAssigner,
    private readonly lateness = 0,
    private readonly lateTag: OutputTag<T> | undefined = undefined,
  ) {
    checkAssigner(assigner, keyed.job.name)
  }

  /**
   * Keeps each event-time window's state `ms` past its end, as Flink does: a record that arrives
   * after the window fired but before the watermark passes `end - 1 + ms` is added and the window
   * fires again with the updated value. Later records are late: they go to {@link lateOutput}, or
   * are dropped.
   * @default 0
   */
  allowedLateness(ms: number): WindowedStream<T, K> {
    return new WindowedStream(this.keyed, this.assigner, checkLateness(ms, this.assigner, this.keyed.job.name), this.lateTag)
  }

  /**
   * Sends records too late for every window they belong to (the watermark passed the window's
   * end - 1 + allowed lateness) to the side output `tag` instead of dropping them. Read them with
   * `.sideOutput(tag)` on the stream the window operator returns.
   * @example
   * const late = outputTag<Reading>('late-readings')
   * const perMinute = readings.keyBy((r) => r.sensor).window(tumblingEventTimeWindows(60_000)).lateOutput(late).reduce('max', (a, b) => (a.value > b.value ? a : b))
   * perMinute.sideOutput(late).sink('late', fileSink({ path: 'late.ndjson' }))
   */
  lateOutput(tag: OutputTag<T>): WindowedStream<T, K> {
    checkLateOutput(tag, this.assigner, this.keyed.job.name)
    return new WindowedStream(this.keyed, this.assigner, this.lateness, tag)
  }

  /**
   * Reduces each window's records with `reduce` as they arrive (one value per window in state)
   * and emits the value when the window fires. For session windows, the values of merging
   * windows are combined with `reduce` too.
   * @example
   * // total per account and hour, by event time
   * payments.keyBy((p) => p.account).window(tumblingEventTimeWindows(3_600_000)).reduce('hourly', (a, b) => ({ ...b, cents: a.cents + b.cents }))
   */
  reduce<OUT = WindowResult<K, T>>(name: string, reduce: (a: T, b: T) => T, options: WindowOptions<K, T, OUT> = {}): Stream<OUT> {
    return this.build(name, 'reduce', reduce, options)
  }

  /**
   * Folds each window's records into an accumulator as they arrive and emits `getResult` of it
   * when the window fires. Accumulators are keyed state: plain data, never changed in place
   * (`add` returns the next one). Session windows need `merge`.
   * @example
   * const average: WindowAggregator<Reading, { sum: number; n: number }, number> = {
   *   createAccumulator: () => ({ sum: 0, n: 0 }),
   *   add: (a, r) => ({ sum: a.sum + r.value, n: a.n + 1 }),
   *   getResult: (a) => a.sum / a.n,
   *   merge: (a, b) => ({ sum: a.sum + b.sum, n: a.n + b.n }),
   * }
   * readings.keyBy((r) => r.sensor).window(tumblingEventTimeWindows(60_000)).aggregate('avg', average)
   */
  aggregate<ACC, R, OUT = WindowResult<K, R>>(name: string, aggregator: WindowAggregator<T, ACC, R>, options: WindowOptions<K, R, OUT> = {}): Stream<OUT> {
    return this.build(name, 'aggregate', aggregator, options)
  }

  /**
   * Keeps every record of each window (list state) and calls `fn` with all of them when the
   * window fires; emits what it returns. Costs memory per record: prefer `reduce` or `aggregate`
   * when the value can be computed incrementally.
   * @example
   * clicks.keyBy((c) => c.user).window(eventTimeSessionWindows(30 * 60_000))
   *   .process('sessions', (user, window, clicks) => ({ pages: new Set(clicks.map((c) => c.page)).size }))
   */
  process<R, OUT = WindowResult<K, R>>(name: string, fn: WindowFunction<T, K, R>, options: WindowOptions<K, R, OUT> = {}): Stream<OUT> {
    return this.build(name, 'process', fn, options)
  }

  private build<OUT>(name: string, kind: WindowContents['kind'], given: unknown, options: unknown): Stream<OUT> {
    const job = this.keyed.job.name
    const contents = windowContents(kind, given, this.assigner, job, name)
    const window = { assigner: this.assigner, lateness: this.lateness, lateTag: this.lateTag as OutputTag<unknown> | undefined }
    const operator = windowProcess(job, name, window, contents, options)
    return this.keyed.process(name, operator.options as ProcessOptions<K, OUT, T>, operator.fn) as Stream<OUT>
  }
}


/** A stream broadcast to every instance of the keyed operator it is connected to. Made by `Stream.broadcast`. */
export class BroadcastStream<T> {
  /** @internal */
  constructor(
    readonly job: JobBuilder,
    /** @internal */ readonly branches: Stream<T>['branches'],
    /** The broadcast states it fills. */
    readonly states: readonly MapStateDescriptor<unknown, unknown>[],
  ) {}
}

/** A keyed stream connected to a broadcast stream. Made by `KeyedStream.connect`. */
export class BroadcastConnectedStream<T, B, K extends Key> {
  /** @internal */
  constructor(
    private readonly job: JobBuilder,
    private readonly keyed: { branches: Stream<T>['branches']; keySelector: (r: unknown) => K },
    private readonly broadcast: BroadcastStream<B>,
  ) {}

  /**
   * A keyed operator that also receives every broadcast record on every instance.
   * @example
   * const rules = mapState<string, Rule>('rules')
   * const ruleStream = j.source('rules', rulesSource).broadcast(rules)
   * events.keyBy((e) => e.user).connect(ruleStream).process('match', { state: { seen } }, {
   *   processElement(e, ctx) {
   *     const rule = ctx.broadcastState(rules).get(e.type)
   *     if (rule !== undefined && e.amount > rule.limit) ctx.emit({ user: ctx.key, rule: rule.id })
   *   },
   *   processBroadcast(rule, ctx) {
   *     ctx.broadcastState(rules).put(rule.type, rule)
   *   },
   * })
   */
  process<OUT>(name: string, options: BroadcastProcessOptions<K, OUT>, fns: BroadcastProcessFunctions<T, B, K, OUT>): Stream<OUT> {
    return this.job.addBroadcastProcess(
      name,
      options as ProcessOptions,
      fns as unknown as BroadcastProcessFunctions<unknown, unknown, Key, unknown>,
      this.keyed as { branches: Stream<unknown>['branches']; keySelector: (r: unknown) => Key },
      this.broadcast as BroadcastStream<unknown>,
    ) as Stream<OUT>
  }
}

