/**
 * A small structured logger: one line per event, `time level [job] message key=value...`.
 * Library code logs only through it, never with console.log.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent']

export type LogFields = Record<string, string | number | boolean | undefined>

export interface Logger {
  debug(message: string, fields?: LogFields): void
  info(message: string, fields?: LogFields): void
  warn(message: string, fields?: LogFields): void
  error(message: string, fields?: LogFields): void
  /** A logger that prefixes every line with `[scope]`. */
  child(scope: string): Logger
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. @default 'info' */
  level?: LogLevel
  /** Where lines go. @default process.stderr */
  write?: (line: string) => void
  scope?: string
}

/** Creates a logger that writes lines at `level` and above. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info'
  if (!(level in RANK)) throw new TypeError(`log level must be one of ${LOG_LEVELS.join(', ')}, got ${String(level)}`)
  const write = options.write ?? ((line: string) => void process.stderr.write(line + '\n'))
  const min = RANK[level]
  const make = (scope: string | undefined): Logger => {
    const log = (lvl: Exclude<LogLevel, 'silent'>) => (message: string, fields?: LogFields) => {
      if (RANK[lvl] < min) return
      let line = `${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${scope === undefined ? '' : `[${scope}] `}${message}`
      if (fields !== undefined) {
        for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : v}`
      }
      write(line)
    }
    return {
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      child: (s) => make(scope === undefined ? s : `${scope} ${s}`),
    }
  }
  return make(options.scope)
}

/** A logger that writes nothing. */
export const silentLogger: Logger = createLogger({ level: 'silent' })
