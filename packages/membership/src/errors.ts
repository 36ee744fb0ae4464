import { HaError, type HaErrorOptions } from '@ha/interface';

/** The membership init is invalid: `details.field` names the offending field. @public */
export class MembershipConfigError extends HaError {
  constructor(field: string, message: string, options: HaErrorOptions = {}) {
    super('ERR_MEMBERSHIP_CONFIG', `membership config: ${field}: ${message}`, {
      ...options,
      details: { field, ...options.details },
    });
  }
}

/** A network's UDP socket could not be bound to its local address and port. @public */
export class MembershipBindError extends HaError {
  constructor(message: string, options: HaErrorOptions = {}) {
    super('ERR_MEMBERSHIP_BIND', message, options);
  }
}

/** A payload or message body cannot be encoded or is too large for one datagram. @public */
export class MembershipEncodeError extends HaError {
  constructor(message: string, options: HaErrorOptions = {}) {
    super('ERR_MEMBERSHIP_ENCODE', message, options);
  }
}

/** `send()` named a member that is not in the configuration. @public */
export class UnknownMemberError extends HaError {
  constructor(id: string) {
    super('ERR_MEMBERSHIP_UNKNOWN_MEMBER', `membership: send to unknown member '${id}' (use a configured node id or '*')`, { details: { id } });
  }
}

/** The heartbeat worker thread died or failed: the membership has failed. @public */
export class MembershipWorkerError extends HaError {
  constructor(message: string, options: HaErrorOptions = {}) {
    super('ERR_MEMBERSHIP_WORKER', message, options);
  }
}
