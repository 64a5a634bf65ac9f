/**
 * Sinks: stdout, an append-only file, and an in-memory array. All three are at-least-once: after
 * a restart they may repeat records written since the last checkpoint (the keyed state itself is
 * exactly-once). Transactional sinks come with two-phase commit (docs/architecture.md section 6, step 4).
 */
import { closeSync, openSync, writeSync } from 'node:fs'
import type { ConnectorContext, Sink, SinkWriter } from './types.ts'
import { ConnectorError, JobDefinitionError, rejectAsync } from '../errors.ts'

/** Options of line-writing sinks. */
export interface LineSinkOptions<T> {
  /** Turns a record into one line. @default JSON.stringify */
  format?: (record: T) => string
}

function formatter<T>(options: LineSinkOptions<T>): (r: T) => string {
  const f = options.format ?? ((r: T) => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)))
  if (typeof f !== 'function') throw new JobDefinitionError('sink format must be a function')
  rejectAsync(f, 'the sink format')
  return f
}

/** Writes each record as a line to standard output. */
export function stdoutSink<T>(options: LineSinkOptions<T> = {}): Sink<T> {
  const format = formatter(options)
  return {
    kind: 'stdout',
    open: () => ({
      write(records) {
        let out = ''
        for (const r of records) out += format(r) + '\n'
        process.stdout.write(out)
      },
    }),
  }
}

/** Options of {@link fileSink}. */
export interface FileSinkOptions<T> extends LineSinkOptions<T> {
  /** File to append to; instance `i > 0` of a parallel sink appends to `path.i`. */
  path: string
}

/** Appends each record as a line to a file. */
export function fileSink<T>(options: FileSinkOptions<T>): Sink<T> {
  if (typeof options?.path !== 'string' || options.path === '') throw new JobDefinitionError('fileSink needs { path }')
  const format = formatter(options)
  return {
    kind: 'file',
    open(ctx: ConnectorContext): SinkWriter<T> {
      const path = ctx.instance === 0 ? options.path : `${options.path}.${ctx.instance}`
      let fd: number
      try {
        fd = openSync(path, 'a')
      } catch (err) {
        throw new ConnectorError(`cannot open ${path} for appending: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, ctx.operator, false, err)
      }
      return {
        write(records) {
          let out = ''
          for (const r of records) out += format(r) + '\n'
          writeSync(fd, out)
        },
        close() {
          closeSync(fd)
        },
      }
    },
  }
}

/** Pushes every record into `target` (tests, small local jobs). */
export function arraySink<T>(target: T[]): Sink<T> {
  if (!Array.isArray(target)) throw new JobDefinitionError('arraySink needs an array')
  return {
    kind: 'array',
    open: () => ({
      write(records) {
        for (const r of records) target.push(r)
      },
    }),
  }
}
