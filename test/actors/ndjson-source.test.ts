import { createHash } from 'node:crypto'
import { appendFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { NdjsonReader, POLL_READ_BUDGET } from '../../actors/connectors/ndjson-source.ts'
import {
  arraySink,
  BadLineError,
  ConnectorError,
  EmbeddedStore,
  SourceChangedError,
  job,
  JobDefinitionError,
  ndjsonSource,
  readSnapshotState,
  runJob,
  startJob,
  valueState,
  type BadLine,
  type Sink,
  type Source,
  type NdjsonSourceOptions,
  type RunOptions,
} from '../../index.ts'

const MiB = 1024 * 1024

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'weir-ndjson-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A file written long enough ago that an unterminated last line counts as settled. */
function oldFile(path: string, content: string | Buffer): string {
  writeFileSync(path, content)
  const past = new Date(Date.now() - 60_000)
  utimesSync(path, past, past)
  return path
}

/** Opens instance `instance` of `parallelism` of an ndjson source directly, closed when the test ends. */
function reader<T = unknown>(t: Test, options: NdjsonSourceOptions, instance = 0, parallelism = 1): NdjsonReader<T> {
  const r = ndjsonSource<T>(options).open({ job: 'j', operator: 'in', instance, parallelism })
  if (!(r instanceof NdjsonReader)) throw new Error('ndjsonSource opens an NdjsonReader synchronously')
  t.teardown(() => r.close())
  return r as NdjsonReader<T>
}

/** Polls until 'end' (or `until` is returned); returns what was emitted. */
function drain<T>(r: NdjsonReader<T>, until: 'end' | 'idle' = 'end'): T[] {
  const out: T[] = []
  for (let i = 0; i < 10_000; i++) {
    const res = r.poll((x) => out.push(x), 100)
    if (res === 'end' || res === until) return out
  }
  throw new Error('the reader never ended')
}

function thrown(f: () => unknown): unknown {
  try {
    f()
  } catch (err) {
    return err
  }
  return undefined
}

/** What `f` throws or rejects with, or undefined. */
async function rejected(f: () => unknown): Promise<unknown> {
  return Promise.resolve().then(f).then(
    () => undefined,
    (err: unknown) => err,
  )
}

const lines = (...ls: string[]) => ls.join('\n') + '\n'

t.test('ndjson - a line spanning many reads is copied once, so reading is linear in its length', async (t) => {
  const dir = tmp(t)
  for (const mib of [1, 8]) {
    const big = JSON.stringify({ blob: 'x'.repeat(mib * MiB) })
    const path = oldFile(join(dir, `big-${mib}.ndjson`), lines('{"a":1}', big, '{"a":2}'))
    const r = reader<{ a?: number; blob?: string }>(t, { path, maxLineBytes: 16 * MiB })
    const out = drain(r)
    t.same(
      out.map((x) => x.a ?? x.blob?.length),
      [1, mib * MiB, 2],
      `${mib} MiB: every record`,
    )
    // Re-concatenating the pending bytes on every 64 KiB read copies about n^2 / 128 KiB bytes.
    const copied = r.stats.bytesCopied - big.length
    t.ok(copied >= 0 && copied <= '{"a":2}'.length, `${mib} MiB: the long line's bytes are copied once (and at most a short line that spans two reads): ${copied} more`)
    t.equal(r.stats.bytesRead, readFileSync(path).length, `${mib} MiB: the file is read once`)
  }
})

t.test('ndjson - one poll reads at most its budget, so a huge line does not hold the event loop', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'huge.ndjson'), lines(JSON.stringify('y'.repeat(6 * MiB))))
  const r = reader<string>(t, { path })
  const results: string[] = []
  let before = 0
  const out: string[] = []
  for (;;) {
    const res = r.poll((x) => out.push(x), 100)
    results.push(res)
    t.ok(r.stats.bytesRead - before <= POLL_READ_BUDGET, `poll ${results.length} read ${r.stats.bytesRead - before} bytes`)
    before = r.stats.bytesRead
    if (res === 'end') break
  }
  t.ok(results.length >= 6, `${results.length} polls for 6 MiB`)
  t.same(results.slice(0, 5), ['more', 'more', 'more', 'more', 'more'], 'each yields with nothing emitted yet')
  t.same(
    out.map((s) => s.length),
    [6 * MiB],
  )
})

t.test('ndjson - a line over maxLineBytes fails at once with the file and line, before the line is read whole', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'long.ndjson'), lines('{"a":1}', JSON.stringify('z'.repeat(8 * MiB)), '{"a":2}'))
  const r = reader(t, { path, maxLineBytes: MiB })
  const err = thrown(() => drain(r))
  t.type(err, BadLineError)
  const e = err as BadLineError
  t.equal(e.message, `operator in: ${path}:2: longer than maxLineBytes (1048576 bytes); fix the file, or set onBadLine to 'skip' or a function`)
  t.same([e.path, e.line, e.reason, e.retryable, e.operator], [path, 2, 'too-long', false, 'in'])
  t.ok(r.stats.bytesRead <= 2 * MiB, `stopped after ${r.stats.bytesRead} of ${8 * MiB} bytes`)
})

t.test('ndjson - a line over maxLineBytes is skipped or handed on without being kept in memory', async (t) => {
  const dir = tmp(t)
  const long = JSON.stringify('z'.repeat(4 * MiB))
  const path = oldFile(join(dir, 'long.ndjson'), lines('{"a":1}', long, '{"a":2}', '"short but over"'))
  const bad: BadLine[] = []
  const r = reader(t, { path, maxLineBytes: 10, onBadLine: (l) => bad.push(l) })
  t.same(drain(r), [{ a: 1 }, { a: 2 }])
  t.same(
    bad.map((b) => [b.line, b.reason, b.byteOffset, b.bytes.length, b.message]),
    [
      [2, 'too-long', 8, 1024, 'longer than maxLineBytes (10 bytes)'],
      [4, 'too-long', 8 + long.length + 1 + 8, 16, 'longer than maxLineBytes (10 bytes)'],
    ],
  )
  t.equal(bad[0]!.text, long.slice(0, 1024), 'the start of the long line')
  t.equal(bad[1]!.text, '"short but over"')
  t.ok(r.stats.bytesCopied < 64 * 1024, `copied ${r.stats.bytesCopied} bytes of a ${long.length}-byte line`)
  t.equal(r.badLines, 2)
})

const INVALID = Buffer.concat([Buffer.from('{"name":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]) // latin-1 é

t.test('ndjson - invalid UTF-8 is a bad line: it fails by default, never becomes U+FFFD silently', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'latin1.ndjson'), Buffer.concat([Buffer.from('{"name":"ok"}\n'), INVALID, Buffer.from('\n{"name":"é"}\n')]))
  const err = thrown(() => drain(reader(t, { path })))
  t.type(err, BadLineError)
  t.equal((err as BadLineError).message, `operator in: ${path}:2: not valid UTF-8; fix the file, or set onBadLine to 'skip' or a function`)
  t.equal((err as BadLineError).reason, 'invalid-utf8')

  const skipping = reader(t, { path, onBadLine: 'skip' })
  t.same(drain(skipping), [{ name: 'ok' }, { name: 'é' }], 'skip: the other lines, real UTF-8 intact')
  t.equal(skipping.badLines, 1, 'skip: counted')

  const bad: BadLine[] = []
  t.same(drain(reader(t, { path, onBadLine: (l) => bad.push(l) })), [{ name: 'ok' }, { name: 'é' }])
  t.equal(bad.length, 1)
  t.same({ ...bad[0], bytes: Buffer.from(bad[0]!.bytes) }, { path, line: 2, byteOffset: 14, reason: 'invalid-utf8', message: 'not valid UTF-8', bytes: INVALID, text: '{"name":"caf\uFFFD"}' }, 'the exact bytes for the side output')
})

t.test('ndjson - a line that is not JSON goes to the side output with file, line and parser message', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'bad.ndjson'), lines('{"a":1}', '', '{"a": oops}', '{"a":3}'))
  const bad: BadLine[] = []
  t.same(drain(reader(t, { path, onBadLine: (l) => bad.push(l) })), [{ a: 1 }, { a: 3 }])
  t.same(
    bad.map((b) => [b.path, b.line, b.reason, b.text]),
    [[path, 3, 'not-json', '{"a": oops}']],
  )
  t.match(bad[0]!.message, /^not JSON \(/)
})

t.test('ndjson - a half-written last line is not parsed until the file settles; appended bytes complete it', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'growing.ndjson')
  writeFileSync(path, '{"a":1}\n{"a":')
  const r = reader(t, { path, settleMs: 60_000 })
  t.same(drain(r, 'idle'), [{ a: 1 }], 'the complete line only')
  t.equal(r.poll(() => t.fail('nothing to emit'), 100), 'idle', 'still waiting')
  t.same(r.offset().pos, 8, 'the offset stays before the half line')
  appendFileSync(path, '2}\n{"a":3}\n')
  t.same(drain(r), [{ a: 2 }, { a: 3 }], 'the line completed by the writer, then the rest')
})

t.test('ndjson - an unterminated last line of a settled file is the last record', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'done.ndjson'), '{"a":1}\n{"a":2}')
  const r = reader(t, { path })
  t.same(drain(r), [{ a: 1 }, { a: 2 }])
  t.same([r.offset().pos, r.offset().line], [15, 2], 'the offset is the end of the file')

  const fresh = join(dir, 'fresh.ndjson')
  writeFileSync(fresh, '{"a":1}\n{"a":2}')
  const waiting = reader(t, { path: fresh, settleMs: 150 })
  t.same(drain(waiting, 'idle'), [{ a: 1 }], 'a file modified just now: waits')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(drain(waiting), [{ a: 2 }], 'once settled: the last record')
})

t.test("ndjson - partialLastLine 'bad': an unterminated last line is a bad line (trailing blanks are not)", async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'cut.ndjson'), '{"a":1}\n{"a":2}')
  const err = thrown(() => drain(reader(t, { path, partialLastLine: 'bad' })))
  t.type(err, BadLineError)
  t.same([(err as BadLineError).line, (err as BadLineError).reason], [2, 'unterminated'])
  t.match((err as BadLineError).message, `${path}:2: the last line has no newline (the file may still be being written)`)
  const skipping = reader(t, { path, partialLastLine: 'bad', onBadLine: 'skip' })
  t.same(drain(skipping), [{ a: 1 }])
  t.equal(skipping.badLines, 1)
  const blanks = oldFile(join(dir, 'blanks.ndjson'), '{"a":1}\n  \r')
  t.same(drain(reader(t, { path: blanks, partialLastLine: 'bad' })), [{ a: 1 }], 'whitespace after the last newline is no line')
})

t.test('ndjson - restore resumes exactly where the offset is, on the same file grown since', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'log.ndjson'), lines(...Array.from({ length: 10 }, (_, i) => `{"i":${i}}`)))
  const first = reader<{ i: number }>(t, { path, onBadLine: 'skip' }, 1, 2)
  t.same(
    first.poll(() => {}, 3),
    'more',
  )
  const offset = first.offset()
  t.same({ ...offset, file: undefined }, { v: 3, pos: 48, line: 6, parallelism: 2, badLines: 0, file: undefined }, 'the next line, and with how many instances')
  appendFileSync(path, lines('{"i":10}', '{"i":11}'))
  const second = reader<{ i: number }>(t, { path, onBadLine: 'skip' }, 1, 2)
  await second.restore(offset)
  t.same(
    drain(second).map((x) => x.i),
    [7, 9, 11],
  )
})

t.test('ndjson - restore refuses a file replaced by a shorter one, or by other bytes, naming the file', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'in.ndjson'), lines(...Array.from({ length: 100 }, (_, i) => `{"i":${i}}`)))
  const r = reader(t, { path })
  drain(r)
  const offset = r.offset()
  const size = readFileSync(path).length

  oldFile(path, lines('{"i":0}', '{"i":1}'))
  const shorter = await rejected(() => reader(t, { path }).restore(offset))
  t.type(shorter, SourceChangedError)
  t.type(shorter, ConnectorError, 'a connector failure like the others')
  t.match(shorter, { path, offset: size, reason: 'shorter', retryable: false, was: { size }, now: { size: 16 } }, 'terminal, with the file, the offset and what differs')
  t.match(
    (shorter as ConnectorError).message,
    new RegExp(`^operator in: cannot resume reading ${path} at byte ${size}: the file is shorter than that; ${size} bytes then, 16 now.* It was replaced or truncated; restore a snapshot taken on this file, put that file back, or start without restoring$`),
  )

  oldFile(path, lines(...Array.from({ length: 100 }, (_, i) => `{"j":${i}}`)))
  const other = await rejected(() => reader(t, { path }).restore(offset))
  t.type(other, SourceChangedError)
  t.match((other as ConnectorError).message, `cannot resume reading ${path} at byte ${size}: the bytes before it are not those read before the snapshot (their SHA-256 differs)`)

  truncateSync(path, 0)
  oldFile(path, lines(...Array.from({ length: 100 }, (_, i) => `{"i":${i}}`)))
  t.equal(await rejected(() => reader(t, { path }).restore(offset)), undefined, 'a file with the same bytes (a copy) is the same file')
})

/** `count` lines `{"i":n,"v":"aaaa"}` (with `count` over 1000 the file is larger than 8 KiB). */
const records = (count: number, changed?: { at: number; v: string }) =>
  lines(...Array.from({ length: count }, (_, i) => `{"i":${i},"v":"${changed?.at === i ? changed.v : 'aaaa'}"}`))

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

t.test('ndjson - refuses a file replaced since the checkpoint by one of the same size with a middle line changed', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'in.ndjson'), records(2000))
  const r = reader(t, { path })
  r.poll(() => {}, 1500)
  const offset = r.offset()
  const size = readFileSync(path).length
  oldFile(path, records(2000, { at: 700, v: 'bbbb' }))
  t.equal(readFileSync(path).length, size, 'the same size')

  const err = await rejected(() => reader(t, { path }).restore(offset))
  t.type(err, SourceChangedError)
  t.match(err, { path, offset: offset.pos, reason: 'content', retryable: false, was: { size }, now: { size } })
  t.match(
    (err as Error).message,
    `operator in: cannot resume reading ${path} at byte ${offset.pos}: the bytes before it are not those read before the snapshot (their SHA-256 differs); `,
  )
  t.match((err as Error).message, `same size (${size} bytes)`, 'says what else differs')
})

t.test('ndjson - restores an unchanged file exactly, and a copy of it (the checksum, not the inode, is the identity)', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'in.ndjson'), records(2000))
  const r = reader<{ i: number }>(t, { path })
  const head: number[] = []
  r.poll((x) => head.push(x.i), 1234)
  const offset = r.offset()
  const again = reader<{ i: number }>(t, { path })
  await again.restore(offset)
  t.same([...head, ...drain(again).map((x) => x.i)], Array.from({ length: 2000 }, (_, i) => i), 'every line once')

  const copy = join(dir, 'copy.ndjson')
  oldFile(copy, readFileSync(path))
  const onCopy = reader<{ i: number }>(t, { path: copy })
  await onCopy.restore(offset)
  t.same(drain(onCopy)[0], { i: 1234, v: 'aaaa' }, 'a copy restores too')
})

t.test('ndjson - the offset holds the SHA-256 of exactly the bytes before it, however the lines fell across reads', async (t) => {
  const dir = tmp(t)
  // Longer than one poll's read budget: offsets are taken while the line is held in pieces, or dropped as too long.
  const long = `{"s":"${'x'.repeat(POLL_READ_BUDGET * 1.5)}"}`
  const content = Buffer.from(lines('{"a":1}', long, 'not json', '{"a":2}', long, '', '{"a":3}') + '{"a":')
  const path = oldFile(join(dir, 'in.ndjson'), content)
  for (const options of [{ onBadLine: 'skip' as const }, { onBadLine: 'skip' as const, maxLineBytes: 1000 }, { onBadLine: 'skip' as const, partialLastLine: 'bad' as const }]) {
    const r = reader(t, { path, ...options })
    const seen = new Set<number>()
    for (let i = 0; i < 100; i++) {
      const res = r.poll(() => {}, 1)
      const o = r.offset()
      seen.add(o.pos)
      t.equal(o.file.sha256, sha256(content.subarray(0, o.pos)), `${JSON.stringify(options)}: at byte ${o.pos}`)
      if (res === 'end' || res === 'idle') break
    }
    t.ok(seen.size >= 4, 'at several offsets')
  }
})

t.test('ndjson - an offset of the previous format (a fingerprint of 4 KiB at each end) still restores', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'in.ndjson'), records(2000))
  const r = reader<{ i: number }>(t, { path })
  r.poll(() => {}, 1000)
  const { file, ...rest } = r.offset()
  const bytes = readFileSync(path)
  const edges = createHash('sha256').update(bytes.subarray(0, 4096)).update(bytes.subarray(rest.pos - 4096, rest.pos)).digest('hex').slice(0, 32)
  const v2 = { ...rest, v: 2, file: { id: file.id, size: file.size, fingerprint: edges } }
  const again = reader<{ i: number }>(t, { path })
  await again.restore(v2)
  t.same(drain(again)[0], { i: 1000, v: 'aaaa' }, 'it resumes at its position')
  t.equal(again.offset().v, 3, 'and the next checkpoint writes the new format')
  t.equal(again.offset().file.sha256, sha256(bytes.subarray(0, again.offset().pos)))
  oldFile(path, Buffer.concat([Buffer.from('{"j":0,"v":"aaaa"}\n'), bytes.subarray(19)]))
  t.match(await rejected(() => reader(t, { path }).restore(v2)), { name: 'SourceChangedError', reason: 'content' }, 'a change it can see is refused')
})

t.test('ndjson - restore refuses another parallelism, a newer offset format, and checks old offsets by position', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'in.ndjson'), lines('{"a":1}', '{"a":2}', '{"a":3}'))
  const r = reader(t, { path }, 0, 2)
  r.poll(() => {}, 1)
  const offset = r.offset()
  t.match(
    ((await rejected(() => reader(t, { path }, 0, 3).restore(offset))) as Error).message,
    "the snapshot's offsets were taken with parallelism 2, this run has 3; an ndjson source cannot be rescaled",
  )
  t.match(((await rejected(() => reader(t, { path }).restore({ ...offset, v: 4 }))) as Error).message, 'offset format 4 is newer than this version of Weir reads')
  // Offsets of earlier versions: { pos, line }.
  const legacy = reader<{ a: number }>(t, { path })
  await legacy.restore({ pos: 8, line: 1 })
  t.same(drain(legacy), [{ a: 2 }, { a: 3 }], 'an old offset at a line start resumes there')
  t.match((await rejected(() => reader(t, { path }).restore({ pos: 5, line: 1 }))) as Error, { name: 'SourceChangedError', message: /at byte 5: it is not at the start of a line/ })
  t.match((await rejected(() => reader(t, { path }).restore({ pos: 500, line: 9 }))) as Error, { name: 'SourceChangedError', message: /at byte 500: the file is shorter than that/ })
  t.match(((await rejected(() => reader(t, { path }).restore('x'))) as Error).message, 'not an ndjson offset: "x"')
})

t.test('ndjson - a file truncated while it is read fails instead of ending early', async (t) => {
  const dir = tmp(t)
  const path = oldFile(join(dir, 'in.ndjson'), lines('{"a":1}', '{"a":2}', '{"a":3}'))
  const r = reader(t, { path })
  r.poll(() => {}, 1)
  truncateSync(path, 4)
  const err = thrown(() => drain(r))
  t.type(err, ConnectorError)
  t.equal((err as ConnectorError).message, `operator in: ${path} shrank from 24 to 4 bytes while it was read: it was truncated; a file source needs a file that only grows`)
})

t.test('ndjson - options are checked when the source is made', async (t) => {
  const cases: [NdjsonSourceOptions, string][] = [
    [{ path: 'x', onBadLines: 'skip' } as NdjsonSourceOptions, "ndjsonSource: unknown option 'onBadLines'; known are path, maxLineBytes, onBadLine, partialLastLine, settleMs"],
    [{ path: 'x', maxLineBytes: 0 }, 'ndjsonSource: maxLineBytes must be a positive integer, got 0'],
    [{ path: 'x', onBadLine: 'ignore' as 'skip' }, "ndjsonSource: onBadLine must be 'fail', 'skip' or a function, got ignore"],
    [{ path: 'x', partialLastLine: 'accept' as 'bad' }, "ndjsonSource: partialLastLine must be 'settled' or 'bad', got accept"],
    [{ path: 'x', settleMs: 1.5 }, 'ndjsonSource: settleMs must be an integer from 0 to 2147483647, got 1.5'],
  ]
  for (const [options, message] of cases) t.throws(() => ndjsonSource(options), new JobDefinitionError(message), message)
})

// End to end: runJob with an embedded store.

function quiet(store: EmbeddedStore, extra: Partial<RunOptions> = {}): RunOptions {
  return { store, logLevel: 'silent', progressIntervalMs: 0, restart: { type: 'none' }, checkpoints: { intervalMs: 1000 }, ...extra }
}

function storeIn(t: Test, dir: string): EmbeddedStore {
  const store = new EmbeddedStore({ dir: join(dir, 'snapshots') })
  t.teardown(() => store.close())
  return store
}

t.test('ndjson job - a finished run, then the file appended to: a restore reads only the new lines', async (t) => {
  const dir = tmp(t)
  const store = storeIn(t, dir)
  const path = oldFile(join(dir, 'in.ndjson'), lines(...Array.from({ length: 50 }, (_, i) => `{"i":${i}}`)))
  const run = async (restore: 'none' | 'latest') => {
    const out: { i: number }[] = []
    const j = job('append')
    j.source('in', ndjsonSource<{ i: number }>({ path }), { parallelism: 2 }).sink('out', arraySink(out))
    await runJob(j, quiet(store, { restore }))
    return out.map((x) => x.i).sort((a, b) => a - b)
  }
  t.same(await run('none'), Array.from({ length: 50 }, (_, i) => i))
  appendFileSync(path, lines('{"i":50}', '{"i":51}', '{"i":52}'))
  t.same(await run('latest'), [50, 51, 52], 'only the appended lines, each once')
})

t.test('ndjson job - a file replaced by a shorter one fails the restore with ConnectorError, never "finished"', async (t) => {
  const dir = tmp(t)
  const store = storeIn(t, dir)
  const path = oldFile(join(dir, 'in.ndjson'), lines(...Array.from({ length: 50 }, (_, i) => `{"i":${i}}`)))
  const make = () => {
    const j = job('replaced')
    j.source('in', ndjsonSource<{ i: number }>({ path })).sink('out', arraySink<{ i: number }>([]))
    return j
  }
  await runJob(make(), quiet(store))
  oldFile(path, lines('{"i":0}'))
  const err = await runJob(make(), quiet(store, { restore: 'latest', restart: { type: 'fixed-delay', attempts: 3, delayMs: 10 } })).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.type(err, SourceChangedError, 'not retried: the same file would fail again')
  t.match((err as Error).message, `cannot resume reading ${path} at byte 440: the file is shorter than that; 440 bytes then, 8 now`)
})

t.test('ndjson job - a file replaced since the checkpoint by one of the same size with a middle line changed fails the restore', async (t) => {
  const dir = tmp(t)
  const store = storeIn(t, dir)
  const path = oldFile(join(dir, 'in.ndjson'), records(2000))
  const make = (out: { i: number; v: string }[]) => {
    const j = job('replaced-middle')
    j.source('in', ndjsonSource<{ i: number; v: string }>({ path }), { parallelism: 2 }).sink('out', arraySink(out))
    return j
  }
  const first: { i: number; v: string }[] = []
  await runJob(make(first), quiet(store))
  t.equal(first.length, 2000)
  oldFile(path, records(2000, { at: 1000, v: 'bbbb' }))
  const again: { i: number; v: string }[] = []
  const err = await rejected(() => runJob(make(again), quiet(store, { restore: 'latest', restart: { type: 'fixed-delay', attempts: 3, delayMs: 10 } })))
  t.type(err, SourceChangedError, 'not retried: the same file would fail again')
  t.match(err, { path, reason: 'content', offset: readFileSync(path).length })
  t.same(again, [], 'nothing read from the other file')

  oldFile(path, records(2000))
  appendFileSync(path, lines('{"i":2000,"v":"new"}'))
  const restored: { i: number; v: string }[] = []
  await runJob(make(restored), quiet(store, { restore: 'latest' }))
  t.same(restored, [{ i: 2000, v: 'new' }], 'the original bytes back, grown: the restore reads the new line')
})

t.test('ndjson job - skip: the job reads every good line once and the source counts the bad ones', async (t) => {
  const dir = tmp(t)
  const store = storeIn(t, dir)
  const rows = Array.from({ length: 40 }, (_, i) => (i % 10 === 3 ? '{broken' : `{"i":${i}}`))
  const path = oldFile(join(dir, 'in.ndjson'), Buffer.concat([Buffer.from(lines(...rows)), INVALID, Buffer.from('\n')]))
  const source = ndjsonSource<{ i: number }>({ path, onBadLine: 'skip' })
  const out: { i: number }[] = []
  const j = job('skip')
  j.source('in', source, { parallelism: 2 }).sink('out', arraySink(out))
  const result = await runJob(j, quiet(store))
  t.equal(result.status, 'finished')
  t.same(
    out.map((x) => x.i).sort((a, b) => a - b),
    Array.from({ length: 40 }, (_, i) => i).filter((i) => i % 10 !== 3),
  )
  t.equal(source.badLines(), 5, 'four lines not JSON, one not UTF-8')
})

t.test('ndjson job - a line still being written when the job reaches it is read once the writer completes it', async (t) => {
  const dir = tmp(t)
  const store = storeIn(t, dir)
  const path = join(dir, 'in.ndjson')
  writeFileSync(path, '{"i":0}\n{"i":')
  const out: { i: number }[] = []
  const j = job('growing')
  j.source('in', ndjsonSource<{ i: number }>({ path, settleMs: 5_000 })).sink('out', arraySink(out))
  const handle = startJob(j, quiet(store))
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(out, [{ i: 0 }], 'the half line is not parsed')
  appendFileSync(path, '1}\n{"i":2}\n')
  const result = await handle.done
  t.equal(result.status, 'finished')
  t.same(out, [{ i: 0 }, { i: 1 }, { i: 2 }])
})

t.test('ndjson - a file whose modification time is ahead of our clock settles by our own watch', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'future.ndjson')
  writeFileSync(path, '{"a":1}\n{"a":2}')
  const future = new Date(Date.now() + 3_600_000)
  utimesSync(path, future, future)
  const r = reader(t, { path, settleMs: 100 })
  t.same(drain(r, 'idle'), [{ a: 1 }], 'waits first')
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.same(drain(r), [{ a: 2 }], 'unchanged for settleMs: the last record')
})

t.test('ndjson job - a failover while a half-written line waits resumes at that line: every line counted once', async (t) => {
  const dir = tmp(t)
  const store = storeIn(t, dir)
  const n = 20_000
  const keyOf = (i: number) => `k${(i * 7919) % 101}`
  const lineOf = (i: number) => `{"i":${i},"key":"${keyOf(i)}"}`
  const head = Array.from({ length: n }, (_, i) => `${lineOf(i)}\n`).join('')
  const path = join(dir, 'in.ndjson')
  writeFileSync(path, head + lineOf(n).slice(0, 6))
  const inner = ndjsonSource<{ i: number; key: string }>({ path, settleMs: 60_000 })
  const restoredAt: unknown[] = []
  // Where each instance was at the latest snapshot: the writer goes on only once both waited at the half-written line.
  const snapshotAt: number[] = []
  const source: Source<{ i: number; key: string }> = {
    kind: 'ndjson',
    open(ctx) {
      const r = inner.open(ctx) as NdjsonReader<{ i: number; key: string }>
      const restore = r.restore.bind(r)
      const offset = r.offset.bind(r)
      r.offset = () => {
        const o = offset()
        snapshotAt[ctx.instance] = (o as { pos: number }).pos
        return o
      }
      r.restore = async (offset) => {
        restoredAt.push((offset as { pos: number }).pos)
        await restore(offset)
      }
      return r
    },
  }
  // Once a checkpoint taken at the half-written line completed, the writer finishes its line and adds more; the first record
  // after that checkpoint fails once, so the job restores from it.
  let checkpointed = false
  let failed = false
  const marker: Sink<unknown> = {
    kind: 'marker',
    open: () => ({
      write() {},
      checkpointCompleted() {
        if (checkpointed || snapshotAt[0] !== head.length || snapshotAt[1] !== head.length) return
        checkpointed = true
        appendFileSync(path, lineOf(n).slice(6) + '\n' + Array.from({ length: 100 }, (_, k) => `${lineOf(n + 1 + k)}\n`).join(''))
      },
    }),
  }
  const count = valueState<number>('count', { default: 0 })
  const j = job('failover')
  j.source('in', source, { parallelism: 2 })
    .map((r) => {
      if (checkpointed && !failed) {
        failed = true
        throw new Error('once')
      }
      return r
    })
    .keyBy((r) => r.key)
    .process('count', { state: { count }, parallelism: 2 }, (_r, ctx) => {
      const c = ctx.state(count)
      c.update(c.value() + 1)
    })
    .sink('marker', marker)
  const result = await runJob(j, quiet(store, { checkpoints: { intervalMs: 10 }, restart: { type: 'fixed-delay', attempts: 1, delayMs: 10 } }))
  t.equal(result.attempts, 2, 'one failover')
  t.same(restoredAt, [head.length, head.length], 'both instances resume at the start of the line that was half-written at the checkpoint')
  const expected = new Map<string, number>()
  for (let i = 0; i <= n + 100; i++) expected.set(keyOf(i), (expected.get(keyOf(i)) ?? 0) + 1)
  const state = await readSnapshotState(store, 'failover', 'count', 'count')
  t.same([...state].sort(([a], [b]) => String(a).localeCompare(String(b))), [...expected].sort(([a], [b]) => a.localeCompare(b)), 'every line counted once')
})
