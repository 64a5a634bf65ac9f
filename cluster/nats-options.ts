// placeholder until the full option handling lands
import { connect } from '@nats-io/transport-node'
import type { ConnectionOptions, NatsConnection } from '@nats-io/nats-core'
export const NATS_FLAGS = { nats: { type: 'string' } } as const
export interface NatsFlags { servers?: string }
export function natsFlagsFrom(values: Record<string, unknown>): NatsFlags {
  return values['nats'] === undefined ? {} : { servers: values['nats'] as string }
}
export function natsConnectionOptions(flags: NatsFlags, env: NodeJS.ProcessEnv = process.env): ConnectionOptions {
  return { servers: (flags.servers ?? env['WEIR_NATS_URL'] ?? 'nats://127.0.0.1:4222').split(',') }
}
export async function connectNats(options: ConnectionOptions, _what: string): Promise<NatsConnection> {
  return await connect(options)
}
