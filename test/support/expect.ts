/** Small assertions the tests share. */

/** The error `p` rejects with; throws if it resolves, so a test cannot pass on a job that should have failed. */
export async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => {
      throw new Error('expected a failure')
    },
    (e: unknown) => e as Error,
  )
}
