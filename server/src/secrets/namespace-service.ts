/**
 * Namespaces: the unit of key isolation. Each has its own versioned KEK,
 * created with it (v1) and destroyed with it.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { conflict, notFound } from '../errors.js';
import type { Keyring } from '../keyring/keyring.js';
import type { Database } from '../storage/schema.js';
import { isUniqueViolation } from '../storage/errors.js';
import { checkNamespaceName } from './names.js';
import { takePage, type PageRequest } from './pagination.js';
import { applyLocally, publishChange, type Changes } from './changes.js';

export interface NamespaceSummary {
  name: string;
  description: string;
  created_at: string;
  updated_at: string;
}

export interface NamespaceDetail extends NamespaceSummary {
  secret_count: number;
  kek: {
    current_version: number;
    versions: Array<{ version: number; origin: string; state: string; created_at: string }>;
  };
}

export interface NamespaceRef {
  id: string;
  name: string;
  currentKekVersion: number;
}

const iso = (d: Date) => d.toISOString();

export class NamespaceService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly keyring: Keyring,
    private readonly changes: Changes,
  ) {}

  async create(name: string, description = ''): Promise<NamespaceDetail> {
    checkNamespaceName(name);
    const id = randomUUID();
    const wrappedKek = await this.keyring.generateWrappedKek(id, 1);
    try {
      await this.db.transaction().execute(async (trx) => {
        await trx.insertInto('namespaces').values({ id, name, description, current_kek_version: 1 }).execute();
        await trx
          .insertInto('namespace_keys')
          .values({
            namespace_id: id,
            version: 1,
            wrapped_key: wrappedKek,
            root_version: this.keyring.rootVersion,
            origin: 'generated',
            state: 'active',
          })
          .execute();
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('already_exists', `namespace "${name}" already exists`);
      throw err;
    }
    return this.get(name);
  }

  async list(page: PageRequest): Promise<{ namespaces: NamespaceSummary[]; next_cursor: string | null }> {
    const rows = await this.db
      .selectFrom('namespaces')
      .select(['name', 'description', 'created_at', 'updated_at'])
      .where('name', '>', page.after)
      .orderBy('name')
      .limit(page.limit + 1)
      .execute();
    const { items, next_cursor } = takePage(rows, page.limit, (r) => r.name);
    return { namespaces: items.map(summary), next_cursor };
  }

  async get(name: string): Promise<NamespaceDetail> {
    const ns = await this.resolve(name);
    const [row, keys, count] = await Promise.all([
      this.db.selectFrom('namespaces').selectAll().where('id', '=', ns.id).executeTakeFirstOrThrow(),
      this.db
        .selectFrom('namespace_keys')
        .select(['version', 'origin', 'state', 'created_at'])
        .where('namespace_id', '=', ns.id)
        .orderBy('version')
        .execute(),
      this.db
        .selectFrom('secrets')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('namespace_id', '=', ns.id)
        .executeTakeFirstOrThrow(),
    ]);
    return {
      ...summary(row),
      secret_count: Number(count.n),
      kek: {
        current_version: row.current_kek_version,
        versions: keys.map((k) => ({ version: k.version, origin: k.origin, state: k.state, created_at: iso(k.created_at) })),
      },
    };
  }

  /**
   * Deletes a namespace with its KEK versions, which makes every secret in it
   * unrecoverable. Refused while it holds secrets unless `force`.
   */
  async delete(name: string, force: boolean): Promise<{ secrets_deleted: number }> {
    checkNamespaceName(name);
    const event = { kind: 'namespace', namespace: name } as const;
    const result = await this.db.transaction().execute(async (trx) => {
      const ns = await trx
        .selectFrom('namespaces')
        .select('id')
        .where('name', '=', name)
        .forUpdate()
        .executeTakeFirst();
      if (!ns) throw notFound(`namespace "${name}" not found`);
      const { n } = await trx
        .selectFrom('secrets')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('namespace_id', '=', ns.id)
        .executeTakeFirstOrThrow();
      const secrets = Number(n);
      if (secrets > 0 && !force) {
        throw conflict('conflict', `namespace "${name}" holds ${secrets} secret(s); delete them first or pass force=true`);
      }
      // Keys first, explicitly: the cascade would do it, but the order states the intent.
      await trx.deleteFrom('namespace_keys').where('namespace_id', '=', ns.id).execute();
      await trx.deleteFrom('namespaces').where('id', '=', ns.id).execute();
      await publishChange(this.changes, trx, event);
      return { id: ns.id, secrets };
    });
    applyLocally(this.changes, event);
    this.keyring.evictNamespace(result.id);
    return { secrets_deleted: result.secrets };
  }

  /** Looks a namespace up by name; 404 when it does not exist. */
  async resolve(name: string, executor: Kysely<Database> | Transaction<Database> = this.db): Promise<NamespaceRef> {
    checkNamespaceName(name);
    const row = await executor
      .selectFrom('namespaces')
      .select(['id', 'current_kek_version'])
      .where('name', '=', name)
      .executeTakeFirst();
    if (!row) throw notFound(`namespace "${name}" not found`);
    return { id: row.id, name, currentKekVersion: row.current_kek_version };
  }
}

function summary(row: { name: string; description: string; created_at: Date; updated_at: Date }): NamespaceSummary {
  return { name: row.name, description: row.description, created_at: iso(row.created_at), updated_at: iso(row.updated_at) };
}
