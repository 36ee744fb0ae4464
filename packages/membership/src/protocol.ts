/** Messages between the main thread and the membership worker. */
import type { LogLevel } from '@ha/interface';
import type { ResolvedConfig } from './config.js';
import type { MemberInfo, MembershipStats } from './types.js';

/** workerData of the worker. */
export interface WorkerInit { cfg: ResolvedConfig; payload: Uint8Array | undefined }

/** Main thread -> worker. */
export type WorkerRequest =
  | { kind: 'setPayload'; bytes: Uint8Array | undefined }
  | { kind: 'send'; to: string; channel: string; body: Uint8Array }
  | { kind: 'mute'; network: string; muted: boolean }
  | { kind: 'stop' };

/** Worker -> main thread. */
export type WorkerReport =
  | { kind: 'started' }
  | { kind: 'startFailed'; error: { name: string; code: string | undefined; message: string; details: Record<string, unknown> | undefined } }
  | { kind: 'event'; name: string; data: unknown }
  | { kind: 'snapshot'; members: MemberInfo[]; stats: MembershipStats }
  | { kind: 'log'; level: LogLevel; event: string; msg: string; fields?: Record<string, unknown> | undefined }
  | { kind: 'stopped' };
