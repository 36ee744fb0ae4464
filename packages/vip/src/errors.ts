import { HaError, type HaErrorOptions } from '@ha/interface';

/** The VIP address is not a usable IPv4 unicast address. Code `ERR_VIP_INVALID_ADDRESS`. @public */
export class InvalidAddressError extends HaError {
  constructor(message: string, options?: HaErrorOptions) { super('ERR_VIP_INVALID_ADDRESS', message, options); }
}

/** The interface named for the VIP does not exist, or none holds a subnet containing it. Code `ERR_VIP_NO_SUCH_INTERFACE`. @public */
export class NoSuchInterfaceError extends HaError {
  constructor(message: string, options?: HaErrorOptions) { super('ERR_VIP_NO_SUCH_INTERFACE', message, options); }
}

/** The VIP is outside every subnet of its interface. Code `ERR_VIP_NOT_IN_SUBNET`. @public */
export class NotInSubnetError extends HaError {
  constructor(message: string, options?: HaErrorOptions) { super('ERR_VIP_NOT_IN_SUBNET', message, options); }
}

/** A prefix length is not an integer in 0..32 (or 1..32 for a VIP). Code `ERR_VIP_INVALID_PREFIX`. @public */
export class InvalidPrefixError extends HaError {
  constructor(message: string, options?: HaErrorOptions) { super('ERR_VIP_INVALID_PREFIX', message, options); }
}

/**
 * The VIP is already configured on this node without our label: it is a fixed address of
 * the node, not ours to add or remove. Code `ERR_VIP_LOCAL_ADDRESS`. @public
 */
export class LocalAddressError extends HaError {
  constructor(message: string, options?: HaErrorOptions) { super('ERR_VIP_LOCAL_ADDRESS', message, options); }
}

/** A system command (`ip`, `arping`) could not be run or failed. Code `ERR_VIP_COMMAND`. @public */
export class CommandError extends HaError {
  constructor(message: string, options?: HaErrorOptions) { super('ERR_VIP_COMMAND', message, options); }
}

/** An option of the VIP or lifeline is out of range. Code `ERR_VIP_INVALID_OPTION`. @public */
export class InvalidOptionError extends HaError {
  constructor(message: string, options?: HaErrorOptions) { super('ERR_VIP_INVALID_OPTION', message, options); }
}

/** `acquire()` was aborted by its signal or by `release()`/`stop()`. Code `ERR_VIP_ABORTED`. @public */
export class AcquireAbortedError extends HaError {
  constructor(message: string, options?: HaErrorOptions) { super('ERR_VIP_ABORTED', message, options); }
}
