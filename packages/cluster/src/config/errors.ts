import { HaError } from '@ha/interface';

/** Where something is in a configuration file. Lines and columns count from 1. @public */
export interface ConfigLocation {
  /** The file as given to the loader, or a label such as `userconfig.xml` when parsing a string. */
  file: string;
  line: number;
  column: number;
  /** Element path, e.g. `safe/service/heart/heartbeat` (`[n]`, counted from 1, when siblings share a name). */
  path: string;
}

/**
 * Something in a configuration file that did not stop it from loading: an unknown element or
 * attribute, a placeholder value such as `VIRTUAL_TO_BE_DEFINED`. @public
 */
export interface ConfigWarning extends ConfigLocation {
  message: string;
}

/** What kind of problem a {@link ConfigError} reports. @public */
export type ConfigErrorReason =
  | 'typographic-quote' // “ ” ‘ ’ ... used as attribute quotes (pasted from a web page)
  | 'syntax' // not well-formed XML
  | 'invalid-value' // an attribute value we cannot use
  | 'missing' // a required element or attribute is absent
  | 'duplicate' // a name given twice, or an element that may appear once given twice
  | 'unknown' // unknown element or attribute with `strict: true`
  | 'reference'; // a name that refers to nothing (heartbeat -> lan, defaultprim -> node)

/** Details of a {@link ConfigError}. @public */
export interface ConfigErrorDetails extends ConfigLocation {
  reason: ConfigErrorReason;
  /** The attribute concerned, if any. */
  attribute?: string;
  /** The offending value, if any. */
  value?: string;
  [key: string]: unknown;
}

/**
 * A configuration file (userconfig.xml or cluster.xml) cannot be used. The message names the
 * file, line, column and element path, e.g.
 * `userconfig.xml:7:21: attribute value of 'name' on <heartbeat> uses a typographic quote (U+201D ”); use straight quotes " or '`.
 * @public
 */
export class ConfigError extends HaError {
  declare readonly details: ConfigErrorDetails;
  /** Same as `details.reason`. */
  readonly reason: ConfigErrorReason;
  /** Same as `details.line`. */
  readonly line: number;

  constructor(message: string, details: ConfigErrorDetails, options: { cause?: unknown } = {}) {
    super('ERR_CONFIG', message, { cause: options.cause, details });
    this.reason = details.reason;
    this.line = details.line;
  }
}

/** A configuration file cannot be read (missing, unreadable). @public */
export class ConfigReadError extends HaError {
  constructor(file: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('ERR_CONFIG_READ', `cannot read configuration file ${file}: ${why}`, { cause, details: { file } });
  }
}

/** `file:line:column: message (at path)`, the form used in error messages. @public */
export function formatConfigWarning(w: ConfigWarning): string {
  return `${w.file}:${w.line}:${w.column}: ${w.message} (at ${w.path})`;
}
