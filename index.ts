/**
 * Weir's public API. Everything not exported here is internal.
 */
export { job, JobBuilder, Stream, KeyedStream, ConnectedKeyedStreams } from './actors/job.ts'
export type { JobOptions, OperatorOptions, ProcessOptions, ProcessContext, ProcessFunction, JobGraph } from './actors/job.ts'
export { valueState, listState, mapState, reducingState, aggregatingState } from './actors/state.ts'
export type {
  ValueState,
  ListState,
  MapState,
  ReducingState,
  AggregatingState,
  Aggregator,
  StateDescriptor,
  StateOptions,
  StateHandle,
} from './actors/state.ts'
export { generatorSource, generatedRecord, ndjsonSource } from './actors/sources.ts'
export type { GeneratedRecord, GeneratorOptions, NdjsonSourceOptions } from './actors/sources.ts'
export { stdoutSink, fileSink, arraySink } from './actors/sinks.ts'
export type { LineSinkOptions, FileSinkOptions } from './actors/sinks.ts'
export type { Source, SourceReader, Sink, SinkWriter, ConnectorContext, PollResult } from './actors/connectors.ts'
export { keyGroupOf, keyGroupRange, instanceOfKeyGroup, KEY_HASH_SEED, DEFAULT_MAX_PARALLELISM } from './actors/key-groups.ts'
export type { Key, KeyGroupRange } from './actors/key-groups.ts'
export { JobDefinitionError, UserCodeError, IncompatibleSnapshotError, ConnectorError, KeySelectorError, MisplacedKeyError } from './actors/errors.ts'
export type { CheckpointMode } from './actors/alignment.ts'
export type { InstanceStatus } from './actors/lifecycle.ts'

export { runJob, startJob, DEFAULT_SNAPSHOT_DIR } from './supervisor/job-runner.ts'
export type { RunOptions, JobResult, JobHandle } from './supervisor/job-runner.ts'
export type { CheckpointOptions } from './supervisor/checkpoint-options.ts'
export type { RestartStrategyOptions } from './supervisor/restart-strategy.ts'
export { createLogger } from './supervisor/logger.ts'
export type { Logger, LogLevel, LoggerOptions } from './supervisor/logger.ts'
export type { JobStatus } from './supervisor/job-machine.ts'
export { InvalidOptionError, UnknownOptionError, JobFailedError, CheckpointFailedError } from './supervisor/errors.ts'

export { EmbeddedStore } from './persistence/embedded-store.ts'
export { PostgresStore } from './persistence/postgres-store.ts'
export { readSnapshotState } from './persistence/snapshot-reader.ts'
export { cborSerde } from './persistence/serde.ts'
export type { Serde } from './persistence/serde.ts'
export type { SnapshotStore, SnapshotInfo, StateChunk } from './persistence/store.ts'
export { WeirError, RetryableError, TerminalError, isRetryable, StoreUnavailableError, CorruptChunkError, SnapshotStateError, StoreSchemaError, DuplicateChunkError, CorruptSnapshotError } from './persistence/errors.ts'
