/**
 * @coffer/sdk/api: the wire contract of the Coffer HTTP API (`/v1`), shared by
 * the server and the SDK — response and request shapes, the closed list of
 * error codes, and the name and reference rules. Field names are the wire's.
 *
 * No runtime dependency and nothing of the client: the server imports this
 * module (as `@coffer/sdk/api`) without pulling in the SDK.
 */
export * from './audit.js';
export * from './auth.js';
export * from './errors.js';
export * from './keys.js';
export * from './kms.js';
export * from './names.js';
export * from './namespaces.js';
export * from './refs.js';
export * from './secrets.js';
export * from './sys.js';
export * from './backup.js';
export * from './namespace-transfer.js';
