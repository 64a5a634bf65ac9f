import { RetryableError, TerminalError, WeirError, describeThrown } from '../persistence/errors.ts'

/**
 * Errors of the programming model and the instance actors. Each says which failure it is, names
 * the job, operator and key where it can, and says whether retrying can help (`retryable`).
 */

/** The job definition is malformed. A user's mistake: fix the job, retrying cannot help. */
export class JobDefinitionError extends TerminalError {
  override readonly name = 'JobDefinitionError'
  constructor(
    message: string,
    readonly job?: string,
    readonly operator?: string,
  ) {
    super(
      operator !== undefined
        ? `job ${job ?? '?'}, operator ${operator}: ${message}`
        : job !== undefined
          ? `job ${job}: ${message}`
          : message,
    )
  }
}

/**
 * Throws if `fn` is an `async` function or an async generator function. Per-record work is
 * synchronous: the runtime sets the key and the state before a call and takes snapshots between
 * calls, so work finished later would land on another record's key and after a barrier. The one
 * check for every user function the runtime calls synchronously; `job` is absent for those given
 * before there is a job (a state descriptor, a serde, a source's or sink's options).
 */
export function rejectAsync(fn: unknown, what: string, job?: string, operator?: string): void {
  const tag = Object.prototype.toString.call(fn)
  if (tag === '[object AsyncFunction]' || tag === '[object AsyncGeneratorFunction]') {
    throw new JobDefinitionError(
      `${what} is an async function; per-record work is synchronous (state would change after the next record's key is set), so make it synchronous and do async work in a source or a sink`,
      job,
      operator,
    )
  }
}

/**
 * User code (a map, a process function, a key selector...) threw. A restart may help.
 *
 * `cause` is what was thrown; when it is an `Error`, this error's `stack` continues with the
 * cause's frames, so the file and line of the user's code are in every printed stack, and
 * `location` holds the first of them.
 */
export class UserCodeError extends RetryableError {
  override readonly name = 'UserCodeError'
  /** `file:line:column` of the innermost frame of the thrown error, when it has a stack. */
  readonly location: string | undefined
  constructor(
    readonly operator: string,
    readonly instance: number,
    readonly key: unknown,
    cause: unknown,
  ) {
    super(`operator ${operator}[${instance}]${key === undefined ? '' : ` key ${describeValue(key)}`}: user code threw: ${describeThrown(cause)}`, { cause })
    const frames = stackFrames(cause)
    // The innermost frame with a file: a built-in (`Array.push (<anonymous>)`) may come first.
    this.location = frames === undefined ? undefined : /([^()\s]+:\d+:\d+)\)?$/m.exec(frames)?.[1]
    if (frames !== undefined) this.stack = `${this.name}: ${this.message}\n${frames}`
  }
}

/** The `    at ...` lines of an error's stack, or undefined. Never throws. */
function stackFrames(thrown: unknown): string | undefined {
  try {
    const stack = thrown instanceof Error ? thrown.stack : undefined
    if (typeof stack !== 'string') return undefined
    const at = stack.search(/^\s+at /m)
    return at < 0 ? undefined : stack.slice(at)
  } catch {
    return undefined
  }
}

/**
 * User code broke the synchronous contract: a process function, map, filter, flatMap or key
 * selector returned a promise (or another thenable). Per-record work runs synchronously between
 * two records of the same instance, so an async function would change state after the next
 * record's key is set (state on the wrong keys) and after a checkpoint barrier passed. Terminal:
 * fix the job (do async work in a source or a sink).
 */
export class AsyncUserCodeError extends TerminalError {
  override readonly name = 'AsyncUserCodeError'
  constructor(
    readonly operator: string,
    readonly instance: number,
    readonly key: unknown,
  ) {
    super(
      `operator ${operator}[${instance}]${key === undefined ? '' : ` key ${describeValue(key)}`}: user code returned a promise; ` +
        'per-record work is synchronous (make the function synchronous and do async work in a source or a sink)',
    )
  }
}

/**
 * A keyed state holds a value the default serde (CBOR) cannot write faithfully: a class
 * instance (it would come back as a plain object without its methods), a function, a symbol or
 * a cycle. Found when a checkpoint first encodes the state. Terminal: give the state a `serde`
 * or keep plain data in it.
 */
export class UnserializableStateError extends TerminalError {
  override readonly name = 'UnserializableStateError'
  constructor(
    readonly operator: string,
    readonly state: string,
    readonly key: unknown,
    /** What the value is, e.g. `an instance of class Counter` or `a function`, and where in it. */
    readonly valueType: string,
  ) {
    super(
      `operator ${operator}, state ${state}, key ${describeValue(key)}: the value holds ${valueType}, which the default serde (CBOR) cannot ` +
        'write and read back; give the state a serde ({ serde: { encode, decode } }) or keep plain data in it ' +
        '(objects, arrays, Maps, Sets, Dates, bigints, typed arrays)',
    )
  }
}

/**
 * A keyed machine did something the runtime cannot carry out exactly once: an action with an
 * effect of its own (a custom action implementation, `sendTo`, `spawnChild`), or a delay in event
 * time on a record without a timestamp. Terminal: change the machine.
 */
export class MachineActionError extends TerminalError {
  override readonly name = 'MachineActionError'
  constructor(
    readonly operator: string,
    readonly key: unknown,
    /** The machine's state value when it happened. */
    readonly stateValue: unknown,
    readonly action: string,
    problem: string,
    cause?: unknown,
  ) {
    super(`machine ${operator}, key ${describeValue(key)}, in state ${JSON.stringify(stateValue)}: action ${action} ${problem}`, cause === undefined ? undefined : { cause })
  }
}

/**
 * A keyed machine's stored snapshot was written by another version of the machine than the job
 * runs, and cannot be used as it is. Terminal: see the message.
 */
export class MachineStateVersionError extends TerminalError {
  override readonly name = 'MachineStateVersionError'
  constructor(
    readonly operator: string,
    readonly key: unknown,
    readonly storedVersion: number,
    readonly version: number,
    problem: string,
  ) {
    super(`machine ${operator}, key ${describeValue(key)}: the stored snapshot of version ${storedVersion} ${problem} (the machine is version ${version})`)
  }
}

/**
 * A message in flight at a checkpoint cannot be written into the snapshot faithfully with CBOR:
 * it holds a class instance, a function, a symbol or a cycle. Terminal: send plain data
 * (objects, arrays, Maps, Sets, Dates, bigints, typed arrays).
 */
export class UnserializableMessageError extends TerminalError {
  override readonly name = 'UnserializableMessageError'
  constructor(
    /** The receiving operator. */
    readonly operator: string,
    readonly key: unknown,
    /** What the message is, e.g. `an instance of class Order`, and where in it. */
    readonly valueType: string,
  ) {
    super(
      `operator ${operator}, message to key ${describeValue(key)}: the message holds ${valueType}, which a snapshot cannot write and read back ` +
        '(messages in flight are written with the checkpoint); send plain data (objects, arrays, Maps, Sets, Dates, bigints, typed arrays)',
    )
  }
}

/** A snapshot cannot be restored into this job (different maxParallelism, state kind changed...). */
export class IncompatibleSnapshotError extends TerminalError {
  override readonly name = 'IncompatibleSnapshotError'
  constructor(
    message: string,
    readonly job: string,
    readonly snapshotId: number,
    readonly operator?: string,
  ) {
    super(`job ${job}, snapshot ${snapshotId}${operator === undefined ? '' : `, operator ${operator}`}: ${message}`)
  }
}

/** A source or sink failed at its edge of the world (file missing, line not JSON...). */
export class ConnectorError extends WeirError {
  override readonly name: string = 'ConnectorError'
  constructor(
    message: string,
    readonly operator: string,
    readonly retryable: boolean,
    cause?: unknown,
  ) {
    super(`operator ${operator}: ${message}`, cause === undefined ? undefined : { cause })
  }
}

/** What is wrong with a line of a file source. */
export type BadLineReason = 'not-json' | 'invalid-utf8' | 'too-long' | 'unterminated'

/**
 * A line of a file source cannot be read as a record (not JSON, not UTF-8, too long, or a last
 * line without a newline), and the source's policy for bad lines is to fail. Reading the same
 * line again cannot help: fix the file, or choose another `onBadLine` policy.
 */
export class BadLineError extends ConnectorError {
  override readonly name = 'BadLineError'
  constructor(
    operator: string,
    /** The file. */
    readonly path: string,
    /** The line's number, from 1. */
    readonly line: number,
    readonly reason: BadLineReason,
    problem: string,
  ) {
    super(`${path}:${line}: ${problem}; fix the file, or set onBadLine to 'skip' or a function`, operator, false)
  }
}

/** What a file source knew of its file when an offset was taken, or knows of it now. */
export interface SourceFileIdentity {
  /** `dev:ino`: which file on which device; a copy has another. */
  id: string
  size: number
  /** Modification time, in ms since the epoch. */
  mtimeMs: number
}

/** Why a file source refuses an offset: the file is shorter than the offset, or its bytes before the offset are others. */
export type SourceChangeReason = 'shorter' | 'content'

/**
 * A file source cannot resume from a snapshot's offset because the file is not the one the
 * offset was taken on: it is shorter than the offset, or the bytes before the offset do not
 * have the checksum recorded with it (the file was replaced or rewritten, even by one of the
 * same size). Resuming would mix records of two files. Terminal: restore a snapshot taken on
 * this file, put the original file back, or start without restoring.
 */
export class SourceChangedError extends ConnectorError {
  override readonly name = 'SourceChangedError'
  constructor(
    operator: string,
    readonly path: string,
    /** The snapshot's offset: the byte position reading would resume at. */
    readonly offset: number,
    readonly reason: SourceChangeReason,
    /** The file as recorded with the offset; `undefined` for offsets of a version that did not record it. */
    readonly was: SourceFileIdentity | undefined,
    readonly now: SourceFileIdentity,
    problem: string,
  ) {
    super(`cannot resume reading ${path} at byte ${offset}: ${problem}; restore a snapshot taken on this file, put that file back, or start without restoring`, operator, false)
  }
}

/** A key selector returned something that is not a key. The job must be fixed; a restart cannot help. */
export class KeySelectorError extends TerminalError {
  override readonly name = 'KeySelectorError'
  constructor(
    readonly operator: string,
    readonly key: unknown,
  ) {
    super(`keyBy into ${operator}: the key selector returned ${describeValue(key)} (${typeof key}); keys must be strings, finite numbers or bigints`)
  }
}

/**
 * If user code returned a thenable, marks its rejection as handled (a rejected promise would
 * otherwise end the process with a raw stack) and returns the error to fail the job with.
 * Call only with a value that is not undefined; cheap for anything that is not an object.
 */
export function asyncResultError(result: unknown, operator: string, instance: number, key: unknown): AsyncUserCodeError | undefined {
  if ((typeof result !== 'object' && typeof result !== 'function') || result === null) return undefined
  let then: unknown
  try {
    then = (result as { then?: unknown }).then
  } catch {
    return undefined
  }
  if (typeof then !== 'function') return undefined
  try {
    ;(then as (ok: unknown, fail: (e: unknown) => void) => unknown).call(result, undefined, () => {})
  } catch {
    // a thenable whose then() throws: nothing is left pending
  }
  return new AsyncUserCodeError(operator, instance, key)
}

/** A value in a few words for an error message; never throws, whatever the value is. */
export function describeValue(value: unknown): string {
  try {
    if (typeof value === 'string') return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}...` : value)
    if (typeof value === 'bigint') return `${value}n`
    if (typeof value === 'symbol' || typeof value === 'function') return String(value)
    if (typeof value === 'object' && value !== null) {
      const json = JSON.stringify(value)
      if (json !== undefined) return json.length > 100 ? `${json.slice(0, 100)}...` : json
    }
    return String(value)
  } catch {
    const name = (value as { constructor?: { name?: unknown } } | null)?.constructor?.name
    return `an unprintable ${typeof name === 'string' ? name : typeof value}`
  }
}

/**
 * A key restored from a keyed chunk does not hash to that chunk's key group: the chunk was moved
 * or forged. The executor reports it as the `CorruptSnapshotError` of the snapshot it restores.
 */
export class MisplacedKeyError extends TerminalError {
  override readonly name = 'MisplacedKeyError'
  constructor(
    readonly key: unknown,
    /** The key group of the chunk the key was found in. */
    readonly keyGroup: number,
    /** The key group the key belongs to. */
    readonly actualKeyGroup: number,
  ) {
    super(`key ${describeValue(key)} was found in key group ${keyGroup} but belongs to key group ${actualKeyGroup}`)
  }
}
