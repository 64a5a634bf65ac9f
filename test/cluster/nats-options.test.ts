/**
 * NATS connection settings: flags over environment variables, clear errors for settings that
 * cannot work, and real servers of the test's own with a password and with TLS (certificates
 * made by the test): the right settings connect, wrong ones fail saying why, fast.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createUser } from '@nats-io/nkeys'
import { connectNats, NatsConnectError, natsConnectionOptions, NatsOptionError, natsFlagsFrom } from '../../cluster/nats-options.ts'
import { freePort, hasNatsServer, makeTestCertificates, NO_NATS_SERVER, startNatsServer } from '../support/nats-server.ts'

if (!hasNatsServer()) t.fail(NO_NATS_SERVER)

const dir = mkdtempSync(join(tmpdir(), 'weir-nats-opts-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

t.test('flags win over the environment, field by field', async (t) => {
  const env = { WEIR_NATS_URL: 'nats://a:1,nats://b:2', WEIR_NATS_USER: 'env-user', WEIR_NATS_PASSWORD: 'env-pass' }
  t.same(natsConnectionOptions({}, env), { servers: ['nats://a:1', 'nats://b:2'], user: 'env-user', pass: 'env-pass' })
  t.same(natsConnectionOptions({ servers: 'nats://c:3', password: 'flag-pass' }, env), { servers: ['nats://c:3'], user: 'env-user', pass: 'flag-pass' })
  t.same(natsConnectionOptions({}, {}), { servers: ['nats://127.0.0.1:4222'] }, 'the default server')
  t.same(natsFlagsFrom({ nats: 'nats://x:1', 'nats-user': 'u', other: 'ignored' }), { servers: 'nats://x:1', user: 'u' })
})

t.test('settings that cannot work say which flag and variable', async (t) => {
  const bad = (flags: Parameters<typeof natsConnectionOptions>[0], re: RegExp) => t.throws(() => natsConnectionOptions(flags, {}), { name: 'NatsOptionError', message: re })
  bad({ password: 'p' }, /--nats-password \(or WEIR_NATS_PASSWORD\) is set but --nats-user \(or WEIR_NATS_USER\) is not/)
  bad({ user: 'u', token: 't' }, /either --nats-token .* or --nats-user/)
  bad({ tlsCert: join(dir, 'c.pem') }, /--nats-tls-cert \(or WEIR_NATS_TLS_CERT\) is set but --nats-tls-key/)
  bad({ tlsKey: join(dir, 'k.pem') }, /--nats-tls-key .* is set but --nats-tls-cert/)
  bad({ tlsCa: join(dir, 'missing.pem') }, /--nats-tls-ca \(or WEIR_NATS_TLS_CA\): no file .*missing\.pem/)
  bad({ credsFile: join(dir, 'a.creds'), nkeySeedFile: join(dir, 'seed') }, /either --nats-creds .* or --nats-nkey/)
  bad({ servers: ' , ' }, /names no server/)
  t.ok(new NatsOptionError('x') instanceof Error)
})

t.test('an unreachable server fails fast and says how to start one', async (t) => {
  const port = await freePort()
  const began = Date.now()
  const err = await connectNats(natsConnectionOptions({ servers: `nats://127.0.0.1:${port}` }, {}), 'test', 2000).then(() => undefined, (e: unknown) => e)
  t.type(err, NatsConnectError)
  t.match((err as Error).message, new RegExp(`no NATS server answers at nats://127.0.0.1:${port}: start one`))
  t.ok(Date.now() - began < 5000, 'within 5 s')
})

t.test('a server with user and password', async (t) => {
  const server = await startNatsServer({ user: 'weir', password: 's3cret' })
  t.teardown(() => server.cleanup())
  const nc = await connectNats(natsConnectionOptions({ servers: server.url, user: 'weir', password: 's3cret' }, {}), 'test')
  const sub = nc.subscribe('ping', {
    callback: (_e, m) => {
      m.respond(m.data)
    },
  })
  const reply = await nc.request('ping', new TextEncoder().encode('hi'), { timeout: 2000 })
  t.equal(new TextDecoder().decode(reply.data), 'hi', 'the right password connects and requests work')
  sub.unsubscribe()
  await nc.close()
  const wrong = await connectNats(natsConnectionOptions({ servers: server.url, user: 'weir', password: 'wrong' }, {}), 'test', 2000).then(() => undefined, (e: unknown) => e)
  t.type(wrong, NatsConnectError)
  t.match((wrong as Error).message, /refused the credentials/)
  const none = await connectNats(natsConnectionOptions({ servers: server.url }, {}), 'test', 2000).then(() => undefined, (e: unknown) => e)
  t.match((none as Error).message, /refused the credentials/, 'no credentials at all: refused too')
})

t.test('a server that lets in one nkey user', async (t) => {
  const user = createUser()
  const stranger = createUser()
  const server = await startNatsServer({ nkey: user.getPublicKey() })
  t.teardown(() => server.cleanup())
  writeFileSync(join(dir, 'user.nk'), `${new TextDecoder().decode(user.getSeed())}\n`)
  writeFileSync(join(dir, 'stranger.nk'), new TextDecoder().decode(stranger.getSeed()))
  const nc = await connectNats(natsConnectionOptions({ servers: server.url, nkeySeedFile: join(dir, 'user.nk') }, {}), 'test')
  await nc.flush()
  t.pass("the user's seed file connects (a trailing newline is fine)")
  await nc.close()
  const fromEnv = await connectNats(natsConnectionOptions({ servers: server.url }, { WEIR_NATS_NKEY_SEED_FILE: join(dir, 'user.nk') }), 'test')
  await fromEnv.close()
  t.pass('and so does WEIR_NATS_NKEY_SEED_FILE')
  const wrong = await connectNats(natsConnectionOptions({ servers: server.url, nkeySeedFile: join(dir, 'stranger.nk') }, {}), 'test', 2000).then(() => undefined, (e: unknown) => e)
  t.type(wrong, NatsConnectError)
  t.match((wrong as Error).message, /refused the credentials/, 'another nkey is refused, said clearly')
})

t.test('a server with TLS, certificates made by the test', async (t) => {
  const certs = makeTestCertificates(dir)
  const server = await startNatsServer({ tls: { cert: certs.cert, key: certs.key } })
  t.teardown(() => server.cleanup())
  const nc = await connectNats(natsConnectionOptions({ servers: server.url, tlsCa: certs.ca }, {}), 'test')
  await nc.flush()
  t.pass('the CA that signed the server certificate connects')
  await nc.close()
  const untrusted = await connectNats(natsConnectionOptions({ servers: server.url }, {}), 'test', 2000).then(() => undefined, (e: unknown) => e)
  t.type(untrusted, NatsConnectError)
  t.match((untrusted as Error).message, /TLS with NATS at .* failed/, 'without the CA: a TLS error, said as one')
  writeFileSync(join(dir, 'junk.pem'), 'not a certificate')
  t.throws(() => connectNats(natsConnectionOptions({ servers: server.url, tlsCert: join(dir, 'junk.pem') }, {}), 'test'), { name: 'NatsOptionError' })
})
