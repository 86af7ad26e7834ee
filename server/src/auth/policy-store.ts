/**
 * Policy documents in the database, compiled and held in memory so a
 * request's authorization is a few regex tests. A change is published on the
 * change feed inside its transaction; every server (this one included)
 * reloads that policy when the notification arrives, and all of them reload
 * everything when the feed reconnects.
 */
import { z } from 'zod';
import { CofferError } from '../errors.js';
import { CAPABILITIES, ROOT_POLICY, compilePolicy, type CompiledPolicy, type PolicyDocument, type PolicyLookup } from '../policy/policy.js';
import { changeEvents, encodeChange } from '../cluster/events.js';
import type { ChangeFeed } from '../storage/change-feed.js';
import type { PoliciesRepo } from '../storage/repos/policies.js';

export const POLICY_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

const glob = z.string().min(1).max(512).regex(/^[^\s]*$/, 'globs have no whitespace');
export const policyDocumentSchema = z
  .object({
    rules: z
      .array(
        z
          .object({
            namespace: glob,
            path: z.string().max(1024).regex(/^[^\s]*$/, 'globs have no whitespace'),
            capabilities: z.array(z.enum(CAPABILITIES)).min(1),
            effect: z.enum(['allow', 'deny']).default('allow'),
          })
          .strict(),
      )
      .max(1000),
  })
  .strict();

export interface PolicyInfo {
  name: string;
  rules: PolicyDocument['rules'];
  created_at: string;
  updated_at: string;
}

export class PolicyStore implements PolicyLookup {
  private compiled = new Map<string, CompiledPolicy>();

  constructor(
    private readonly repo: PoliciesRepo,
    private readonly feed: ChangeFeed,
  ) {}

  get(name: string): CompiledPolicy | undefined {
    return this.compiled.get(name);
  }

  async loadAll(): Promise<void> {
    const rows = await this.repo.all();
    const next = new Map<string, CompiledPolicy>();
    for (const row of rows) {
      const doc = policyDocumentSchema.safeParse({ rules: row.rules });
      // A row that no longer parses grants nothing (deny by default) rather than failing every request.
      if (doc.success) next.set(row.name, compilePolicy(row.name, doc.data));
    }
    this.compiled = next;
  }

  async reload(name: string): Promise<void> {
    const row = await this.repo.rules(name);
    const doc = row ? policyDocumentSchema.safeParse({ rules: row.rules }) : null;
    if (doc?.success) this.compiled.set(name, compilePolicy(name, doc.data));
    else this.compiled.delete(name);
  }

  async put(name: string, doc: PolicyDocument): Promise<{ created: boolean }> {
    checkName(name);
    const created = await this.repo.transaction(async (trx) => {
      const existed = await this.repo.lock(name, trx);
      await this.repo.upsert(name, doc.rules, trx);
      await this.feed.publish(trx, policyChange(name));
      return !existed;
    });
    await this.reload(name);
    return { created };
  }

  async read(name: string): Promise<PolicyInfo> {
    if (name === ROOT_POLICY) {
      return { name, rules: [{ namespace: '*', path: '*', capabilities: [...CAPABILITIES], effect: 'allow' }], created_at: '', updated_at: '' };
    }
    const row = await this.repo.find(name);
    if (!row) throw new CofferError('not_found', `policy ${name} does not exist`);
    return {
      name: row.name,
      rules: policyDocumentSchema.parse({ rules: row.rules }).rules,
      created_at: row.created_at.toISOString(),
      updated_at: row.updated_at.toISOString(),
    };
  }

  async list(): Promise<string[]> {
    return [ROOT_POLICY, ...(await this.repo.names())];
  }

  async delete(name: string): Promise<void> {
    checkName(name);
    const deleted = await this.repo.transaction(async (trx) => {
      const existed = await this.repo.delete(name, trx);
      if (existed) await this.feed.publish(trx, policyChange(name));
      return existed;
    });
    this.compiled.delete(name);
    if (!deleted) throw new CofferError('not_found', `policy ${name} does not exist`);
  }

  clear(): void {
    this.compiled.clear();
  }
}

function checkName(name: string): void {
  if (name === ROOT_POLICY) throw new CofferError('invalid_request', 'the root policy is built in and cannot be changed');
  if (!POLICY_NAME.test(name)) {
    throw new CofferError('invalid_request', 'policy names are 1-64 characters of a-z, 0-9, _ and -, starting with a letter or digit');
  }
}

export function policyChange(name: string): string {
  return encodeChange(changeEvents.policy(name));
}
