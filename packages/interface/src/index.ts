/**
 * Shared types of the HA SDK: the {@link Startable} lifecycle with its status guard,
 * the {@link HaError} base class with stable codes, and the {@link ModuleLog} interface
 * every component writes its decisions to.
 *
 * @example
 * ```ts
 * import { HaError, startAll, stopAll, type Startable } from '@ha/interface'
 *
 * class Thing implements Startable {
 *   async start() { console.log('started') }
 *   async stop() { console.log('stopped') }
 * }
 * const things = [new Thing(), new Thing()]
 * await startAll(things) // if one fails, those already started are stopped and the error rethrown
 * await stopAll(things)
 * console.log(new HaError('ERR_EXAMPLE', 'what went wrong').code)
 * ```
 *
 * @packageDocumentation
 */

export { HaError, isHaError } from './errors.js';
export type { HaErrorOptions } from './errors.js';
export { startAll, stopAll, StatusGuard, isStartable } from './startable.js';
export type { Startable, Status } from './startable.js';
export { consoleLog, memoryLog, nullLog } from './log.js';
export { sinkLog } from './log.js';
export type { ModuleLog, LogEntry, LogLevel, LogFields, LogSink } from './log.js';
export type { DataReplication, DataContext, DataFactory, ReintegrationProgress, DeathRegistry, PeerMessages } from './data.js';
