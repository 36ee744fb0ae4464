import { HaError } from '@ha/interface';

/** A farm filter option is wrong (names the field and what is wrong). @public */
export class FarmFilterConfigError extends HaError {
  constructor(field: string, message: string) {
    super('ERR_FARM_FILTER_CONFIG', `farm filter: ${field}: ${message}`, { details: { field } });
  }
}

/** `nft` refused a ruleset or could not run. @public */
export class NftError extends HaError {
  constructor(message: string, stderr: string, script: string) {
    super('ERR_FARM_NFT', `nft: ${message}${stderr ? `: ${stderr.trim()}` : ''}`, { details: { stderr, script } });
  }
}
