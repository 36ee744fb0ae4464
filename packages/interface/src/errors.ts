/** Options of {@link HaError}. @public */
export interface HaErrorOptions {
  /** The lower-level error that caused this one. */
  cause?: unknown;
  /** Machine-readable details: the offending value, the file and line, the node... */
  details?: Record<string, unknown>;
}

/**
 * Base class of every error the SDK throws. `code` is stable (it never changes once
 * released) and names one failure; `message` says what is wrong and where.
 * @public
 */
export class HaError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(code: string, message: string, options: HaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True if `err` is an {@link HaError}, optionally with the given code. @public */
export function isHaError(err: unknown, code?: string): err is HaError {
  return err instanceof HaError && (code === undefined || err.code === code);
}
