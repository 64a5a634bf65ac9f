/**
 * The online-learning example (examples/online-learning): the model in state is exactly the one
 * gradient descent gives over the labelled points in order; every event is scored once, by a
 * model version that was published, and the scores of the later models are good.
 */
import t from 'tap'
import { arraySink } from 'weir'
import { testJob } from 'weir/testing'
import { learn, model, onlineLearning, points, PUBLISH_EVERY, untrained, type Model, type Score } from '../../examples/online-learning/job.ts'

t.test('online-learning - the checkpointed model is exact, the scores use published models and improve', async (t) => {
  const data = points(12_000)
  const out: Score[] = []
  const run = await testJob(onlineLearning(arraySink(out), data))
  t.equal(run.result.status, 'finished')
  let expected: Model = untrained
  for (const p of data) if (p.kind === 'train') expected = learn(expected, p)
  t.same(run.state<Model>('train', model).get('model'), expected, 'the model in the final snapshot is gradient descent over every labelled point once, in order')

  const toScore = data.filter((p) => p.kind === 'score')
  t.same(out.map((s) => s.id).sort((a, b) => a - b), toScore.map((p) => p.id), 'every event scored exactly once')
  t.ok(out.every((s) => s.version % PUBLISH_EVERY === 0 && s.version <= expected.version), 'each score names a published model')
  const accuracy = (scores: Score[]) => scores.filter((s) => (s.probability >= 0.5 ? 1 : 0) === s.label).length / scores.length
  const late = out.filter((s) => s.version >= 3_000)
  t.ok(late.length > 500, `most events are scored by a trained model (${late.length})`)
  // The labels are drawn from a true model with noise: about 0.8 is the best any model can do here.
  t.ok(accuracy(late) > 0.75, `accuracy of the later models: ${accuracy(late).toFixed(3)}`)
})
