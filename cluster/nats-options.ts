/**
 * How a node connects to NATS: servers, credentials and TLS from flags and the environment
 * (docs/cluster.md), and a connect that says what went wrong in words.
 */
import { existsSync, readFileSync } from 'node:fs'
import { connect, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node'

/** The connection settings a user gives, as flags or environment variables. */
export interface NatsFlags {
  /** Comma-separated server URLs. */
  servers?: string | undefined
  user?: string | undefined
  password?: string | undefined
  token?: string | undefined
  /** A file holding an nkey seed (`SU...`). */
  nkeySeedFile?: string | undefined
  /** A `.creds` file (a user JWT and its nkey seed). */
  credsFile?: string | undefined
  /** CA certificate(s) that sign the server's certificate. */
  tlsCa?: string | undefined
  /** Client certificate and key, for servers that verify clients. */
  tlsCert?: string | undefined
  tlsKey?: string | undefined
}

/** A flag, its `NatsFlags` field and its environment variable. */
const SETTINGS = [
  ['nats', 'servers', 'WEIR_NATS_URL', '<url[,url]>', 'NATS servers (default nats://127.0.0.1:4222)'],
  ['nats-user', 'user', 'WEIR_NATS_USER', '<user>', 'user name'],
  ['nats-password', 'password', 'WEIR_NATS_PASSWORD', '<password>', 'password (prefer the environment variable)'],
  ['nats-token', 'token', 'WEIR_NATS_TOKEN', '<token>', 'token'],
  ['nats-nkey', 'nkeySeedFile', 'WEIR_NATS_NKEY_SEED_FILE', '<file>', 'file with an nkey seed'],
  ['nats-creds', 'credsFile', 'WEIR_NATS_CREDS_FILE', '<file>', '.creds file (JWT and seed)'],
  ['nats-tls-ca', 'tlsCa', 'WEIR_NATS_TLS_CA', '<file>', 'CA certificate of the server (turns TLS on)'],
  ['nats-tls-cert', 'tlsCert', 'WEIR_NATS_TLS_CERT', '<file>', 'client certificate (with --nats-tls-key)'],
  ['nats-tls-key', 'tlsKey', 'WEIR_NATS_TLS_KEY', '<file>', 'client key'],
] as const

/** `node:util` parseArgs options of the NATS flags. */
export const NATS_FLAGS = Object.fromEntries(SETTINGS.map(([flag]) => [flag, { type: 'string' }])) as { [K in (typeof SETTINGS)[number][0]]: { type: 'string' } }

/** The NATS flags in the usage text. */
export const NATS_USAGE = `NATS options (each also from its environment variable):\n${SETTINGS.map(([flag, , env, arg, what]) => `  --${`${flag} ${arg}`.padEnd(31)} ${what}; ${env}`).join('\n')}\n`

/** A connection setting that cannot work. */
export class NatsOptionError extends Error {
  override readonly name = 'NatsOptionError'
}

/** The parsed flag values as {@link NatsFlags}. */
export function natsFlagsFrom(values: Record<string, unknown>): NatsFlags {
  const out: NatsFlags = {}
  for (const [flag, field] of SETTINGS) if (typeof values[flag] === 'string') out[field] = values[flag]
  return out
}

const describe = (field: keyof NatsFlags) => {
  const s = SETTINGS.find((x) => x[1] === field)!
  return `--${s[0]} (or ${s[2]})`
}

/**
 * nats.js connection options from flags, falling back to environment variables field by field.
 * @throws {NatsOptionError} for settings that cannot work together or files that cannot be read
 */
export function natsConnectionOptions(flags: NatsFlags, env: NodeJS.ProcessEnv = process.env): ConnectionOptions {
  const f: NatsFlags = {}
  for (const [, field, name] of SETTINGS) {
    const v = flags[field] ?? env[name]
    if (v !== undefined && v !== '') f[field] = v
  }
  const servers = (f.servers ?? 'nats://127.0.0.1:4222').split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (servers.length === 0) throw new NatsOptionError(`${describe('servers')} names no server`)
  const o: ConnectionOptions = { servers }
  if (f.password !== undefined && f.user === undefined) throw new NatsOptionError(`${describe('password')} is set but ${describe('user')} is not`)
  if (f.user !== undefined) {
    o.user = f.user
    if (f.password !== undefined) o.pass = f.password
  }
  if (f.token !== undefined) {
    if (f.user !== undefined) throw new NatsOptionError(`give either ${describe('token')} or ${describe('user')}, not both`)
    o.token = f.token
  }
  if (f.credsFile !== undefined && f.nkeySeedFile !== undefined) throw new NatsOptionError(`give either ${describe('credsFile')} or ${describe('nkeySeedFile')}, not both`)
  if (f.credsFile !== undefined) o.authenticator = credsAuthenticator(readSetting('credsFile', f.credsFile))
  if (f.nkeySeedFile !== undefined) o.authenticator = nkeyAuthenticator(new TextEncoder().encode(new TextDecoder().decode(readSetting('nkeySeedFile', f.nkeySeedFile)).trim()))
  if ((f.tlsCert === undefined) !== (f.tlsKey === undefined)) {
    throw new NatsOptionError(f.tlsCert !== undefined ? `${describe('tlsCert')} is set but ${describe('tlsKey')} is not` : `${describe('tlsKey')} is set but ${describe('tlsCert')} is not`)
  }
  if (f.tlsCa !== undefined || f.tlsCert !== undefined) {
    o.tls = {}
    if (f.tlsCa !== undefined) o.tls.ca = new TextDecoder().decode(readSetting('tlsCa', f.tlsCa))
    if (f.tlsCert !== undefined) o.tls.cert = new TextDecoder().decode(readSetting('tlsCert', f.tlsCert))
    if (f.tlsKey !== undefined) o.tls.key = new TextDecoder().decode(readSetting('tlsKey', f.tlsKey))
  }
  return o
}

function readSetting(field: keyof NatsFlags, file: string): Uint8Array {
  if (!existsSync(file)) throw new NatsOptionError(`${describe(field)}: no file ${file}`)
  try {
    return readFileSync(file)
  } catch (err) {
    throw new NatsOptionError(`${describe(field)}: cannot read ${file}: ${(err as Error).message}`)
  }
}

/** NATS could not be reached or refused this client. */
export class NatsConnectError extends Error {
  override readonly name = 'NatsConnectError'
  constructor(
    message: string,
    readonly servers: readonly string[],
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/**
 * Connects within `timeoutMs`, then keeps reconnecting for ever (a node rides out a NATS
 * restart). Failures come back as {@link NatsConnectError} saying what to do.
 */
export async function connectNats(options: ConnectionOptions, name: string, timeoutMs = 5000): Promise<NatsConnection> {
  const servers = ([] as string[]).concat(options.servers ?? [])
  const where = servers.join(', ')
  try {
    return await connect({ name, timeout: timeoutMs, maxReconnectAttempts: -1, reconnectTimeWait: 250, ...options })
  } catch (err) {
    const e = err as Error & { code?: string }
    const text = `${e.message} ${String(e.code ?? '')} ${String((e.cause as Error | undefined)?.message ?? '')}`
    if (/authoriz|authentic|permission/i.test(text)) throw new NatsConnectError(`NATS at ${where} refused the credentials: ${e.message}. Check --nats-user/--nats-password, --nats-token, --nats-nkey or --nats-creds`, servers, { cause: err })
    if (/tls|certificate|ssl|self.signed/i.test(text)) throw new NatsConnectError(`TLS with NATS at ${where} failed: ${e.message}. Check --nats-tls-ca (the CA that signed the server's certificate) and the server's TLS settings`, servers, { cause: err })
    if (/ECONNREFUSED|connection refused|timeout|ENOTFOUND|EHOSTUNREACH/i.test(text)) {
      throw new NatsConnectError(`no NATS server answers at ${where}: start one (nats-server -a 127.0.0.1) or pass --nats <url>`, servers, { cause: err })
    }
    throw new NatsConnectError(`cannot connect to NATS at ${where}: ${e.message}`, servers, { cause: err })
  }
}
