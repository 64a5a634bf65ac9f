import t from 'tap'
import { BarrierAligner } from '../../actors/alignment.ts'

t.test('alignment - one channel snapshots as soon as its barrier arrives', async (t) => {
  const a = new BarrierAligner(1, 'exactly-once')
  t.same(a.onBarrier(0, 1), { snapshot: 1 })
  t.equal(a.aligning, undefined)
  t.equal(a.isHeld(0), false, 'nothing is held after the snapshot')
  t.equal(a.lastSnapshot, 1)
  t.same(a.onBarrier(0, 2), { snapshot: 2 })
  t.equal(a.lastSnapshot, 2)
})

t.test('alignment - exactly-once: the first barrier holds its channel, the last completes and releases', async (t) => {
  const a = new BarrierAligner(2, 'exactly-once')
  t.same(a.onBarrier(1, 5), {}, 'no snapshot while channel 0 has not delivered barrier 5')
  t.equal(a.aligning, 5)
  t.equal(a.isHeld(1), true, 'the channel that delivered the barrier waits')
  t.equal(a.isHeld(0), false, 'the other channel goes on')
  t.same(a.onBarrier(0, 5), { snapshot: 5 })
  t.equal(a.isHeld(0), false)
  t.equal(a.isHeld(1), false, 'released after the snapshot')
  t.equal(a.aligning, undefined)
  t.equal(a.lastSnapshot, 5)
})

t.test('alignment - exactly-once with three channels holds each channel as its barrier arrives', async (t) => {
  const a = new BarrierAligner(3, 'exactly-once')
  t.same(a.onBarrier(0, 1), {})
  t.same([a.isHeld(0), a.isHeld(1), a.isHeld(2)], [true, false, false])
  t.same(a.onBarrier(2, 1), {})
  t.same([a.isHeld(0), a.isHeld(1), a.isHeld(2)], [true, false, true])
  t.same(a.onBarrier(1, 1), { snapshot: 1 })
  t.same([a.isHeld(0), a.isHeld(1), a.isHeld(2)], [false, false, false])
})

t.test('alignment - at-least-once never holds a channel and snapshots on the last barrier', async (t) => {
  const a = new BarrierAligner(2, 'at-least-once')
  t.same(a.onBarrier(0, 1), {})
  t.equal(a.aligning, 1)
  t.equal(a.isHeld(0), false)
  t.equal(a.isHeld(1), false)
  t.same(a.onBarrier(1, 1), { snapshot: 1 })
  t.equal(a.lastSnapshot, 1)
})

t.test('alignment - an ended channel counts as having delivered every barrier', async (t) => {
  const a = new BarrierAligner(2, 'exactly-once')
  t.same(a.onEnd(0), {}, 'an end with no alignment in progress does nothing')
  t.equal(a.allEnded, false)
  t.same(a.onBarrier(1, 1), { snapshot: 1 }, 'the only live channel completes the alignment at once')
  t.same(a.onBarrier(1, 2), { snapshot: 2 })
  t.same(a.onEnd(1), {})
  t.equal(a.allEnded, true)
})

t.test('alignment - a channel ending during an alignment completes it when it was the last one missing', async (t) => {
  const a = new BarrierAligner(2, 'exactly-once')
  t.same(a.onBarrier(0, 3), {})
  t.equal(a.isHeld(0), true)
  t.same(a.onEnd(1), { snapshot: 3 })
  t.equal(a.isHeld(0), false)
  t.equal(a.lastSnapshot, 3)
})

t.test('alignment - the held channel itself ending does not count twice', async (t) => {
  const a = new BarrierAligner(3, 'exactly-once')
  t.same(a.onBarrier(0, 1), {})
  t.same(a.onEnd(0), {}, 'channels 1 and 2 still owe barrier 1')
  t.same(a.onBarrier(1, 1), {}, 'channel 2 still owes barrier 1')
  t.same(a.onBarrier(2, 1), { snapshot: 1 })
  t.same(a.onEnd(0), {}, 'a second end of the same channel is ignored')
  t.same(a.onEnd(1), {})
  t.equal(a.allEnded, false)
  t.same(a.onEnd(2), {})
  t.equal(a.allEnded, true)
})

t.test('alignment - a newer barrier overtaking an unfinished alignment aborts the older one', async (t) => {
  const a = new BarrierAligner(2, 'at-least-once')
  t.same(a.onBarrier(0, 1), {})
  t.same(a.onBarrier(0, 2), { aborted: 1 }, 'channel 0 delivered barrier 2 before channel 1 delivered 1')
  t.equal(a.aligning, 2)
  t.same(a.onBarrier(1, 1), {}, 'the late barrier of the aborted checkpoint is ignored')
  t.equal(a.aligning, 2)
  t.same(a.onBarrier(1, 2), { snapshot: 2 })
  t.equal(a.lastSnapshot, 2)
})

t.test('alignment - exactly-once: an overtaking barrier releases the channels held for the aborted one', async (t) => {
  const a = new BarrierAligner(3, 'exactly-once')
  t.same(a.onBarrier(0, 1), {})
  t.equal(a.isHeld(0), true)
  t.same(a.onBarrier(1, 2), { aborted: 1 })
  t.equal(a.isHeld(0), false, 'channel 0 no longer waits for checkpoint 1')
  t.equal(a.isHeld(1), true, 'channel 1 waits for checkpoint 2')
  t.same(a.onBarrier(0, 2), {})
  t.same(a.onBarrier(2, 2), { snapshot: 2 })
})

t.test('alignment - an overtaking barrier that completes at once reports both the abort and the snapshot', async (t) => {
  const a = new BarrierAligner(2, 'at-least-once')
  t.same(a.onBarrier(0, 1), {})
  t.same(a.onEnd(0), {}, 'channel 1 still owes barrier 1')
  t.same(a.onBarrier(1, 2), { aborted: 1, snapshot: 2 }, 'channel 1 skipped barrier 1; channel 0 ended')
  t.equal(a.lastSnapshot, 2)
  t.equal(a.aligning, undefined)
})

t.test('alignment - old and duplicate barriers are ignored', async (t) => {
  const a = new BarrierAligner(2, 'exactly-once')
  t.same(a.onBarrier(0, 3), {})
  t.same(a.onBarrier(0, 3), {}, 'a duplicate on the same channel does not count again')
  t.equal(a.aligning, 3)
  t.same(a.onBarrier(0, 2), {}, 'an older barrier during an alignment')
  t.equal(a.aligning, 3)
  t.same(a.onBarrier(1, 3), { snapshot: 3 })
  t.same(a.onBarrier(0, 3), {}, 'a barrier already snapshotted')
  t.same(a.onBarrier(1, 1), {}, 'a barrier older than the last snapshot')
  t.equal(a.aligning, undefined, 'old barriers start no alignment')
  t.equal(a.isHeld(0), false)
  t.equal(a.isHeld(1), false)
  t.equal(a.lastSnapshot, 3)
})
