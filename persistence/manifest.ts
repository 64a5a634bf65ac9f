/**
 * A snapshot's manifest: the list of every chunk a completed snapshot holds, with its format,
 * size and checksum, itself checksummed and stored with the completed mark (docs/architecture.md
 * section 8). It makes a snapshot prove it is whole: a chunk removed, moved to another address or
 * changed, a chunk added, or a "completed" mark with nothing behind it is found before any state
 * is restored.
 *
 * Both stores build it from what was written when completing, and check what they hold against
 * it with {@link verifyManifest}; the pure logic lives here so it is the same for both.
 */
import { compareAddresses, addressKey } from './chunk-address.ts'
import { checksum } from './checksum.ts'
import { CorruptSnapshotError, describeChunk } from './errors.ts'
import { isKeyGroupKind, type ChunkKind } from './snapshot-kinds.ts'
import type { ChunkAddress, SnapshotLayout } from './store.ts'

/** The manifest layout this code writes and reads. */
export const MANIFEST_VERSION = 1

/** One chunk as the manifest lists it, or as a store holds it. */
export interface ManifestEntry extends ChunkAddress {
  format: number
  /** Bytes of chunk data; 0 for an empty key group. */
  size: number
  /** The chunk checksum (`chunkChecksum`: address, format and data). */
  checksum: string
}

/** A manifest as stored: its exact text and the checksum of that text. */
export interface StoredManifest {
  text: string
  checksum: string
}

/** Every address a snapshot of `layout` must hold: all key groups of key-group kinds, every instance of the others. */
export function requiredAddresses(layout: SnapshotLayout): ChunkAddress[] {
  const out: ChunkAddress[] = []
  for (const op of layout.operators) {
    for (const kind of op.chunks ?? []) {
      const count = isKeyGroupKind(kind) ? layout.maxParallelism : op.parallelism
      for (let index = 0; index < count; index++) out.push({ operatorUid: op.uid, kind, index })
    }
  }
  return out
}

/**
 * The manifest of a snapshot being completed, from the chunks written to it. Throws
 * `CorruptSnapshotError` if a required address was never written: such a snapshot must not be
 * marked completed.
 */
export function buildManifest(job: string, id: number, layout: SnapshotLayout, written: readonly ManifestEntry[]): StoredManifest {
  const have = new Set(written.map(addressKey))
  const missing = requiredAddresses(layout).filter((a) => !have.has(addressKey(a)))
  if (missing.length > 0) {
    throw new CorruptSnapshotError(
      job,
      id,
      missing.map((a) => `${describeChunk(a)} was never written, so the snapshot cannot be completed`),
    )
  }
  const chunks = [...written]
    .sort(compareAddresses)
    .map((e) => [e.operatorUid, e.kind, e.index, e.format, e.size, e.checksum])
  const text = JSON.stringify({ version: MANIFEST_VERSION, job, snapshot: id, chunks })
  return { text, checksum: checksum(Buffer.from(text, 'utf8')) }
}

/**
 * Checks what a store holds for a completed snapshot against its manifest. Throws
 * `CorruptSnapshotError` naming every problem: no manifest, a manifest that fails its checksum or
 * belongs elsewhere, a listed chunk missing, moved or changed, a chunk held twice or not listed.
 */
export function verifyManifest(job: string, id: number, stored: StoredManifest | undefined, held: readonly ManifestEntry[]): void {
  const fail = (problems: string[]): never => {
    throw new CorruptSnapshotError(job, id, problems)
  }
  if (stored === undefined) {
    return fail(['it has no manifest (its completed mark was not written by Weir, or by a Weir older than manifests)'])
  }
  if (checksum(Buffer.from(stored.text, 'utf8')) !== stored.checksum) return fail(['its manifest does not match its checksum'])
  const listed = parseManifest(stored.text)
  if (listed === undefined) return fail(['its manifest cannot be read'])
  if (listed.job !== job || listed.snapshot !== id) {
    return fail([`its manifest is that of snapshot ${String(listed.snapshot)} of job '${String(listed.job)}'`])
  }
  const expected = new Map(listed.entries.map((e) => [addressKey(e), e]))
  const byChecksum = new Map(listed.entries.map((e) => [e.checksum, e]))
  const seen = new Set<string>()
  const problems: string[] = []
  for (const h of [...held].sort(compareAddresses)) {
    const key = addressKey(h)
    if (seen.has(key)) {
      problems.push(`${describeChunk(h)} is stored twice`)
      continue
    }
    seen.add(key)
    const e = expected.get(key)
    const origin = byChecksum.get(h.checksum)
    if (e === undefined) {
      problems.push(
        origin === undefined
          ? `${describeChunk(h)} is not in the manifest`
          : `${describeChunk(h)} is not in the manifest: it holds the chunk listed as ${describeChunk(origin)} (moved)`,
      )
    } else if (e.checksum !== h.checksum || e.size !== h.size || e.format !== h.format) {
      problems.push(
        origin !== undefined && origin !== e
          ? `${describeChunk(h)} holds the chunk listed as ${describeChunk(origin)} (moved)`
          : `${describeChunk(h)} was changed (manifest: ${e.size} bytes, format ${e.format}; stored: ${h.size} bytes, format ${h.format}, another checksum)`,
      )
    }
  }
  for (const e of listed.entries) if (!seen.has(addressKey(e))) problems.push(`${describeChunk(e)} is missing`)
  if (problems.length > 0) fail(problems)
}

function parseManifest(text: string): { job: unknown; snapshot: unknown; entries: ManifestEntry[] } | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  const m = value as { version?: unknown; job?: unknown; snapshot?: unknown; chunks?: unknown }
  if (typeof m !== 'object' || m === null || m.version !== MANIFEST_VERSION || !Array.isArray(m.chunks)) return undefined
  const entries: ManifestEntry[] = []
  for (const c of m.chunks as unknown[]) {
    if (!Array.isArray(c) || c.length !== 6) return undefined
    const [operatorUid, kind, index, format, size, sum] = c as unknown[]
    if (typeof operatorUid !== 'string' || typeof kind !== 'string' || typeof index !== 'number' || typeof format !== 'number') return undefined
    if (typeof size !== 'number' || typeof sum !== 'string') return undefined
    entries.push({ operatorUid, kind: kind as ChunkKind, index, format, size, checksum: sum })
  }
  return { job: m.job, snapshot: m.snapshot, entries }
}
