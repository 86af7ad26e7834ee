/**
 * What the seal endpoints answer (/v1/sys/seal-status, init, unseal,
 * generate-root, rotate-root, seal-migrate): the wire contract's types
 * (sdk/src/api/sys.ts), shared with the SDK.
 */
export type { GenerateRootProgress, InitResult, RotateRootResult, SealMigrateResult, SealStatus } from '@coffer/sdk/api';
