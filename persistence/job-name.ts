/**
 * Job names become folder names (embedded store) and keys (Postgres store), so both stores accept
 * the same portable set: no path separators, no spaces, nothing a shell or file system treats
 * specially.
 */
const JOB_NAME = /^[A-Za-z0-9_.-]{1,128}$/

/** Throws a `TypeError` that says what is wrong with `job` unless it is a valid job name. */
export function assertJobName(job: unknown): asserts job is string {
  if (typeof job !== 'string') {
    throw new TypeError(`job name must be a string, got ${typeof job}`)
  }
  if (!JOB_NAME.test(job) || job === '.' || job === '..') {
    throw new TypeError(
      `invalid job name ${JSON.stringify(job)}: use 1 to 128 letters, digits, '_', '.' or '-' ` +
        `(and not '.' or '..')`,
    )
  }
}
