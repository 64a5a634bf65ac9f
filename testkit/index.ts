/**
 * `weir/testing`: what tests of Weir jobs need. Everything not exported here is internal.
 */
export { ManualClock } from './manual-clock.ts'
export { testJob } from './test-job.ts'
export type { TestJobOptions, TestJobRun } from './test-job.ts'
export { operatorHarness } from './operator-harness.ts'
export type { OperatorHarness, OperatorHarnessOptions, HarnessRecord, PendingTimer } from './operator-harness.ts'
