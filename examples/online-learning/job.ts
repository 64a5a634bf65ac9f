/**
 * Online learning (use 3 of docs/architecture.md section 13): a logistic regression over three
 * features, updated by stochastic gradient descent with every labelled point and kept as keyed
 * state (so it is checkpointed and restored like any state); every 100 points its parameters are
 * broadcast to a scoring operator, whose instances each keep the newest in broadcast state and
 * score unlabelled events with it. The scores get better as the model learns.
 *
 *   npx weir run examples/online-learning/job.ts
 */
import { job, mapState, stdoutSink, valueState, type Sink } from 'weir'
import { arraySource } from '../support/array-source.ts'

export const FEATURES = 3
export const LEARNING_RATE = 0.1
/** Points between two broadcasts of the parameters. */
export const PUBLISH_EVERY = 100

/** A labelled point to learn from, or an event to score (its label is kept to measure the scores). */
export interface Point {
  kind: 'train' | 'score'
  id: number
  x: number[]
  label: 0 | 1
}

/** The model's parameters, numbered by how many points they learned from. */
export interface Model {
  version: number
  weights: number[]
  bias: number
}

/** A scored event. */
export interface Score {
  id: number
  probability: number
  label: 0 | 1
  /** The version of the model that scored it (0: none had arrived). */
  version: number
}

export const sigmoid = (z: number) => 1 / (1 + Math.exp(-z))
export const predict = (m: Model, x: readonly number[]) => sigmoid(m.bias + x.reduce((s, xi, i) => s + xi * m.weights[i]!, 0))

/** One step of gradient descent on the log loss. */
export function learn(m: Model, p: Point): Model {
  const error = predict(m, p.x) - p.label
  return { version: m.version + 1, weights: m.weights.map((w, i) => w - LEARNING_RATE * error * p.x[i]!), bias: m.bias - LEARNING_RATE * error }
}

export const untrained: Model = { version: 0, weights: new Array<number>(FEATURES).fill(0), bias: 0 }

/** Deterministic points: labels drawn from a true model, so a learned one can score well. One in four is to score. */
export function points(count = 20_000): Point[] {
  let a = 12345
  const next = () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 4294967296)
  const truth: Model = { version: 0, weights: [3, -4, 2], bias: 0.5 }
  return Array.from({ length: count }, (_, id) => {
    const x = Array.from({ length: FEATURES }, () => next() * 2 - 1)
    const label = next() < predict(truth, x) ? 1 : 0
    return { kind: id % 4 === 3 ? 'score' : 'train', id, x, label }
  })
}

/** The model, kept under the one key 'model'. */
export const model = valueState<Model>('model')
/** The newest parameters on each scoring instance. */
export const parameters = mapState<'model', Model>('parameters')

/** The job, writing its scores to `sink`. */
export function onlineLearning(sink: Sink<Score>, data: readonly Point[] = points()) {
  const j = job('online-learning')
  const all = j.source('points', arraySource(data))
  const published = all
    .filter((p) => p.kind === 'train')
    .keyBy(() => 'model')
    .process('train', { state: { model } }, (p, ctx) => {
      const m = learn(ctx.state(model).value() ?? untrained, p)
      ctx.state(model).update(m)
      if (m.version % PUBLISH_EVERY === 0) ctx.emit(m)
    })
    .broadcast(parameters)
  all
    .filter((p) => p.kind === 'score')
    .keyBy((p) => p.id)
    .connect(published)
    .process('score', { parallelism: 2 }, {
      processElement(p, ctx) {
        const m = ctx.broadcastState(parameters).get('model')
        ctx.emit({ id: p.id, probability: m === undefined ? 0.5 : predict(m, p.x), label: p.label, version: m?.version ?? 0 })
      },
      processBroadcast(m: Model, ctx) {
        const current = ctx.broadcastState(parameters).get('model')
        if (current === undefined || m.version > current.version) ctx.broadcastState(parameters).put('model', m)
      },
    })
    .sink('scores', sink)
  return j
}

export default onlineLearning(stdoutSink())
