/**
 * A replayable source over an array, shared by the examples that build their input in code.
 */
import type { Source } from 'weir'

/** A replayable source over an array: the offset is the next index. */
export function arraySource<T>(records: readonly T[]): Source<T> {
  return {
    kind: 'array',
    open() {
      let next = 0
      return {
        restore(offset) {
          next = offset as number
        },
        poll(emit, max) {
          for (let n = 0; n < max && next < records.length; n++) emit(records[next++]!)
          return next >= records.length ? 'end' : 'more'
        },
        offset: () => next,
      }
    },
  }
}

