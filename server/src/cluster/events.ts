/**
 * Every event of the change feed between servers sharing one database (the
 * NOTIFY payloads of storage/change-feed.ts), declared once: a schema per
 * kind, from which the event type, the typed constructors and the parser
 * follow. A kind added here gets a handler in cluster/dispatch.ts or the build
 * fails.
 *
 * Payloads come from other processes, possibly of another version during a
 * rolling upgrade: one that does not parse, or names a kind this server does
 * not know, is reported and ignored, never trusted and never fatal. Fields a
 * newer server adds are dropped.
 */
import type { Kysely, Transaction } from 'kysely';
import { z } from 'zod';
import type { ChangeFeed } from '../storage/change-feed.js';
import type { Database } from '../storage/schema.js';

/** Names and paths are validated where they are written; here only their shape matters. */
const name = z.string().min(1);

const SCHEMAS = {
  /** A secret was written, deleted or had a version changed: read caches drop it. */
  secret: z.object({ kind: z.literal('secret'), namespace: name, path: name }),
  /** Something namespace-wide changed (disabled, shredded, rewrapped): read caches drop the namespace. */
  namespace: z.object({ kind: z.literal('namespace'), namespace: name }),
  /** A namespace's key material was destroyed: every server zeroes its cached KEKs (not a read-cache matter). */
  'namespace-keys': z.object({ kind: z.literal('namespace-keys'), namespaceId: name }),
  /** A policy was written or deleted: reload it. */
  policy: z.object({ kind: z.literal('policy'), name }),
  /** Tokens were revoked: reload the revocation list. */
  tokens: z.object({ kind: z.literal('tokens') }),
  /** A new root key version is in effect: follow it (vault/follow-root.ts). */
  root: z.object({ kind: z.literal('root'), version: z.number().int().min(1) }),
  /** The vault was initialised (on some server): servers started before read seal_config again. */
  init: z.object({ kind: z.literal('init') }),
} as const;

type Schemas = typeof SCHEMAS;
export type ChangeKind = keyof Schemas;
export type ChangeEventOf<K extends ChangeKind> = z.infer<Schemas[K]>;
/** One change-feed event: the union of every kind. */
export type ChangeEvent = { [K in ChangeKind]: ChangeEventOf<K> }[ChangeKind];

/** Every kind, in declaration order (tests walk it). */
export const CHANGE_KINDS = Object.keys(SCHEMAS) as ChangeKind[];

/** The typed constructors publishers use. */
export const changeEvents = {
  secret: (namespace: string, path: string): ChangeEventOf<'secret'> => ({ kind: 'secret', namespace, path }),
  namespace: (namespace: string): ChangeEventOf<'namespace'> => ({ kind: 'namespace', namespace }),
  namespaceKeys: (namespaceId: string): ChangeEventOf<'namespace-keys'> => ({ kind: 'namespace-keys', namespaceId }),
  policy: (policy: string): ChangeEventOf<'policy'> => ({ kind: 'policy', name: policy }),
  tokens: (): ChangeEventOf<'tokens'> => ({ kind: 'tokens' }),
  root: (version: number): ChangeEventOf<'root'> => ({ kind: 'root', version }),
  init: (): ChangeEventOf<'init'> => ({ kind: 'init' }),
};

export function encodeChange(event: ChangeEvent): string {
  return JSON.stringify(event);
}

/** Announces `event` to every server (this one included), at the commit of the transaction it is published in. */
export function publishEvent(feed: Pick<ChangeFeed, 'publish'>, executor: Kysely<Database> | Transaction<Database>, event: ChangeEvent): Promise<void> {
  return feed.publish(executor, encodeChange(event));
}

export type ParsedChange =
  | { ok: true; event: ChangeEvent }
  /** `unknown-kind`: well-formed, but a kind this server does not know (a newer server's); `malformed`: anything else. */
  | { ok: false; problem: 'malformed' | 'unknown-kind'; kind?: string };

/** Reads a payload; never throws. */
export function parseChangeEvent(payload: string): ParsedChange {
  let raw: unknown;
  try {
    raw = JSON.parse(payload);
  } catch {
    return { ok: false, problem: 'malformed' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, problem: 'malformed' };
  const kind = (raw as { kind?: unknown }).kind;
  if (typeof kind !== 'string') return { ok: false, problem: 'malformed' };
  if (!Object.hasOwn(SCHEMAS, kind)) return { ok: false, problem: 'unknown-kind', kind };
  const parsed = SCHEMAS[kind as ChangeKind].safeParse(raw);
  return parsed.success ? { ok: true, event: parsed.data } : { ok: false, problem: 'malformed', kind };
}

/** A payload's event, or null when it is not one this server understands. */
export function parseChange(payload: string): ChangeEvent | null {
  const parsed = parseChangeEvent(payload);
  return parsed.ok ? parsed.event : null;
}

/** One handler per kind: leaving one out does not compile. */
export type ChangeHandlers = { [K in ChangeKind]: (event: ChangeEventOf<K>) => void };

export function handleChange(handlers: ChangeHandlers, event: ChangeEvent): void {
  // The union's kind picks its handler; TypeScript cannot correlate the two on its own.
  (handlers[event.kind] as (e: ChangeEvent) => void)(event);
}
