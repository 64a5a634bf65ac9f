/**
 * File writes that survive `kill -9` and power loss at any moment: a file is either absent or
 * complete, never half-written. Readers ignore names starting with `TEMP_PREFIX`.
 */
import { randomUUID } from 'node:crypto'
import { mkdir, open, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'

export const TEMP_PREFIX = '.tmp-'

/** Writes `name` in `dir` via a temp file, fsync and rename, then fsyncs `dir` to keep the rename. */
export async function writeFileAtomic(dir: string, name: string, bytes: Uint8Array | string): Promise<void> {
  const temp = join(dir, `${TEMP_PREFIX}${randomUUID()}-${name}`)
  try {
    const handle = await open(temp, 'wx')
    try {
      await handle.writeFile(bytes)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temp, join(dir, name))
  } catch (err) {
    // The temp file is ignored by readers and swept later, so failing to remove it here must
    // not hide the error that matters.
    await unlink(temp).catch(() => undefined)
    throw err
  }
  await syncDir(dir)
}

/** Creates `dir` (and its parents) and makes its entry in the parent durable. */
export async function mkdirDurable(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true })
  if (created === undefined) return
  // Each new directory's entry lives in its parent: flush every parent from `dir` up to the
  // directory that already existed.
  let child = dir
  while (child !== created && dirname(child) !== child) {
    child = dirname(child)
    await syncDir(child)
  }
  await syncDir(dirname(created))
}

/** Flushes a directory's entries (renames, creations, deletions) to disk. */
export async function syncDir(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync; NTFS journals metadata anyway.
  if (process.platform === 'win32') return
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
