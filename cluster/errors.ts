import { RetryableError } from '../persistence/errors.ts'

/**
 * Errors of the cluster's data plane. A broken channel fails its attempt, and the coordinator
 * recovers the job from the last checkpoint: the channels of the next attempt start afresh, so
 * these are retryable.
 */

/**
 * A remote channel received something it must not feed to its instance: a sequence gap or a
 * replay, a message of another attempt, messages lost (by the sender's probe), or bytes that do
 * not decode.
 */
export class ChannelBrokenError extends RetryableError {
  override readonly name = 'ChannelBrokenError'
  constructor(
    /** `from[i] -> to[j]`: the channel's sending and receiving instances. */
    readonly channel: string,
    readonly problem: string,
  ) {
    super(`channel ${channel}: ${problem}`)
  }
}

/**
 * A remote channel's sender sent more items than its receiver granted credit for. Credit is
 * cumulative (the total number of items the sender may have sent), and a sender holds back
 * whatever is beyond it, so any excess is a broken sender or a forged message; the receiver
 * refuses it at the first item over the grant, before its queue can grow without bound.
 */
export class CreditExceededError extends RetryableError {
  override readonly name = 'CreditExceededError'
  constructor(
    readonly channel: string,
    /** Items the receiver had allowed in all when the excess item arrived. */
    readonly granted: number,
    /** Items received in all, counting the excess one. */
    readonly received: number,
  ) {
    super(`channel ${channel}: the sender sent item ${received} but was granted credit for ${granted}; a sender must hold items back until it is granted credit for them`)
  }
}
