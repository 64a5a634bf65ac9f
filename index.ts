/**
 * Weir's public API. Everything not exported here is internal.
 */
export { job, JobBuilder, Stream, KeyedStream, ConnectedKeyedStreams } from './actors/api/streams.ts'
export type { JobOptions, OperatorOptions, ProcessOptions, ActorOptions, SourceOptions } from './actors/api/options.ts'
export type { MessageHandler, ProcessContext, ProcessFunction, TimerService, TimerContext } from './actors/api/contexts.ts'
export type { JobGraph, OperatorSpec, OperatorBase, SourceSpec, ProcessSpec, SinkSpec, OperatorProcessSpec, EdgeSpec, Partitioning, Transform } from './actors/api/graph.ts'
export { outputTag } from './actors/api/side-outputs.ts'
export type { OutputTag } from './actors/api/side-outputs.ts'
export { boundedOutOfOrderness } from './actors/time/watermarks.ts'
export type { WatermarkStrategy, BoundedOutOfOrdernessOptions } from './actors/time/watermarks.ts'
export { systemClock } from './actors/time/clock.ts'
export type { Clock } from './actors/time/clock.ts'
export type { TimeDomain } from './actors/time/timers.ts'
export { valueState, listState, mapState, reducingState, aggregatingState } from './actors/api/state.ts'
export type {
  ValueState,
  ListState,
  MapState,
  ReducingState,
  AggregatingState,
  Aggregator,
  StateDescriptor,
  StateOptions,
  StateTtlOptions,
  StateTtl,
  StateTtlUpdate,
  StateHandle,
  StateKind,
  DescriptorBase,
  ValueStateDescriptor,
  ListStateDescriptor,
  MapStateDescriptor,
  ReducingStateDescriptor,
  AggregatingStateDescriptor,
} from './actors/api/state.ts'
export {
  tumblingEventTimeWindows,
  slidingEventTimeWindows,
  eventTimeSessionWindows,
  tumblingProcessingTimeWindows,
  slidingProcessingTimeWindows,
  processingTimeSessionWindows,
} from './actors/time/windows.ts'
export type { TimeWindow, WindowAssigner, TumblingWindows, SlidingWindows, SessionWindows, WindowTimeDomain } from './actors/time/windows.ts'
export { WindowedStream } from './actors/api/streams.ts'
export type { WindowResult, WindowOptions, WindowAggregator, WindowFunction } from './actors/time/window-spec.ts'
export type { MachineOptions, MachineDelays } from './actors/machines/keyed-machine.ts'
export { operatorListState } from './actors/state/operator-state.ts'
export type { OperatorStateDistribution, OperatorListStateOptions, OperatorListStateDescriptor, OperatorContext, OperatorProcessFunction, OperatorProcessOptions } from './actors/state/operator-state.ts'
export { BroadcastStream, BroadcastConnectedStream } from './actors/api/streams.ts'
export type { ReadOnlyBroadcastState, KeyedBroadcastContext, KeyedBroadcastTimerContext, BroadcastContext, BroadcastProcessFunctions } from './actors/api/contexts.ts'
export type { BroadcastProcessOptions } from './actors/api/options.ts'
export type { BroadcastSpec } from './actors/api/graph.ts'
export { generatorSource, generatedRecord, ndjsonSource } from './actors/connectors/sources.ts'
export type { GeneratedRecord, GeneratorOptions, NdjsonSourceOptions, NdjsonSource, BadLine, BadLinePolicy } from './actors/connectors/sources.ts'
export { stdoutSink, fileSink, arraySink } from './actors/connectors/sinks.ts'
export type { LineSinkOptions, FileSinkOptions } from './actors/connectors/sinks.ts'
export type { Source, SourceReader, Sink, SinkWriter, ConnectorContext, PollResult } from './actors/connectors/types.ts'
export { keyGroupOf, keyGroupRange, instanceOfKeyGroup, KEY_HASH_SEED, DEFAULT_MAX_PARALLELISM } from './actors/state/key-groups.ts'
export type { Key, KeyGroupRange } from './actors/state/key-groups.ts'
export { JobDefinitionError, UserCodeError, IncompatibleSnapshotError, ConnectorError, KeySelectorError, BadLineError, SourceChangedError, AsyncUserCodeError, UnserializableStateError, UnserializableMessageError, MisplacedKeyError, MachineActionError, MachineStateVersionError } from './actors/errors.ts'
export type { BadLineReason, SourceChangeReason, SourceFileIdentity } from './actors/errors.ts'
export type { CheckpointMode } from './actors/runtime/alignment.ts'
export type { InstanceStatus } from './actors/runtime/lifecycle.ts'

export { runJob, startJob, DEFAULT_SNAPSHOT_DIR } from './supervisor/job-runner.ts'
export type { RunOptions, JobResult, JobHandle } from './supervisor/job-runner.ts'
export type { ExecutorTuning, ExecutorMetrics } from './actors/runtime/executor-options.ts'
export type { CheckpointOptions } from './supervisor/checkpoint-options.ts'
export type { RestartStrategyOptions, ResolvedRestartStrategy, NoRestartOptions, FixedDelayOptions, ExponentialBackoffOptions, FailureRateOptions } from './supervisor/restart-strategy.ts'
export { DEFAULT_RESTART_STRATEGY } from './supervisor/restart-strategy.ts'
export { createLogger } from './actors/runtime/logger.ts'
export type { Logger, LogLevel, LoggerOptions, LogFields } from './actors/runtime/logger.ts'
export type { JobStatus } from './supervisor/job-machine.ts'
export { InvalidOptionError, UnknownOptionError, JobFailedError, CheckpointFailedError, FinalCheckpointError } from './supervisor/errors.ts'

export { EmbeddedStore } from './persistence/embedded-store.ts'
export type { EmbeddedStoreOptions } from './persistence/embedded-store.ts'
export { PostgresStore } from './persistence/postgres-store.ts'
export type { PostgresStoreOptions } from './persistence/postgres-options.ts'
export { readSnapshotState } from './persistence/snapshot-reader.ts'
export { cborSerde } from './persistence/serde.ts'
export type { Serde } from './persistence/serde.ts'
export type { SnapshotStore, SnapshotInfo, StateChunk, BeginSnapshot, CompleteSnapshot, SnapshotKind, SnapshotLayout, SnapshotLayoutOperator, ChunkAddress, ChunkFilter, JobLease, LeaseOptions, LeaseTakeover, LeaseWait } from './persistence/store.ts'
export type { SnapshotStatus, ChunkKind } from './persistence/snapshot-kinds.ts'
export { WeirError, RetryableError, TerminalError, isRetryable, StoreUnavailableError, CorruptChunkError, SnapshotStateError, StoreSchemaError, DuplicateChunkError, FencedError, JobAlreadyRunningError, ReadOnlyStoreError, CorruptSnapshotError, type LeaseHolderInfo } from './persistence/errors.ts'
