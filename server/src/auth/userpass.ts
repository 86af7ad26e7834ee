/**
 * Users with passwords, and groups that give their members policies.
 *
 * Passwords are hashed with argon2id (OWASP's minimum: m=19 MiB, t=2, p=1, or
 * whatever the server is configured with); the PHC string keeps the
 * parameters with the hash, so raising them later rehashes each user at their
 * next successful login. Argon2 runs only here, never on the request path.
 */
import argon2 from 'argon2';
import type { Kysely } from 'kysely';
import { CofferError, conflict } from '../errors.js';
import type { Database } from '../storage/schema.js';
import { isUniqueViolation } from '../storage/errors.js';
import type { LoginGuard } from './login-guard.js';
import { loginFailed } from './login.js';
import type { AuthResponse, TokenService } from './tokens.js';

export interface Argon2Params {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

/** OWASP Password Storage Cheat Sheet, argon2id first option. */
export const OWASP_ARGON2: Argon2Params = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

export const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
export const GROUP_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export interface UserInfo {
  username: string;
  policies: string[];
  groups: string[];
  created_at: string;
  updated_at: string;
}

export interface GroupInfo {
  name: string;
  policies: string[];
  members: string[];
}

export class UserpassService {
  /** Verified against when the user does not exist, so both cases cost one argon2 run. */
  private dummyHash: Promise<string> | null = null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly tokens: TokenService,
    private readonly guard: LoginGuard,
    private readonly params: Argon2Params,
  ) {}

  async login(username: string, password: string, client: string): Promise<AuthResponse> {
    const subject = userSubject(username);
    this.guard.check(client, subject);
    const row = USERNAME.test(username)
      ? await this.db.selectFrom('users').select(['username', 'password_hash', 'policies']).where('username', '=', username).executeTakeFirst()
      : undefined;
    // argon2.verify compares in constant time; an unknown user costs the same argon2 run.
    const ok = await argon2.verify(row?.password_hash ?? (await this.dummy()), password).catch(() => false);
    if (!row || !ok) {
      this.guard.failure(client, subject);
      throw loginFailed();
    }
    this.guard.success(client, subject);
    if (argon2.needsRehash(row.password_hash, { ...this.params })) {
      const hash = await this.hash(password);
      await this.db.updateTable('users').set({ password_hash: hash }).where('username', '=', username).execute();
    }
    const groups = await this.db
      .selectFrom('group_members')
      .innerJoin('groups', 'groups.name', 'group_members.group_name')
      .select(['groups.name', 'groups.policies'])
      .where('group_members.username', '=', username)
      .execute();
    const policies = unique([...row.policies, ...groups.flatMap((g) => g.policies)]);
    return this.tokens.issue({
      identity: `user:${username}`,
      displayName: username,
      policies,
      metadata: { username, ...(groups.length ? { groups: groups.map((g) => g.name).join(',') } : {}) },
      ttlSeconds: this.tokens.limits.defaultTtlSeconds,
      maxTtlSeconds: this.tokens.limits.maxTtlSeconds,
      renewable: true,
    });
  }

  async putUser(username: string, input: { password?: string | undefined; policies?: string[] | undefined; groups?: string[] | undefined }): Promise<{ created: boolean }> {
    checkName(username, USERNAME, 'usernames are 1-128 characters of A-Z, a-z, 0-9, ., _, @ and -');
    const hash = input.password !== undefined ? await this.hash(input.password) : undefined;
    return this.db.transaction().execute(async (trx) => {
      const existing = await trx.selectFrom('users').select('username').where('username', '=', username).forUpdate().executeTakeFirst();
      if (!existing) {
        if (hash === undefined) throw new CofferError('invalid_request', 'a new user needs a password');
        await trx
          .insertInto('users')
          .values({ username, password_hash: hash, policies: JSON.stringify(input.policies ?? []) })
          .execute();
      } else {
        await trx
          .updateTable('users')
          .set({
            ...(hash !== undefined ? { password_hash: hash } : {}),
            ...(input.policies !== undefined ? { policies: JSON.stringify(input.policies) } : {}),
            updated_at: new Date(),
          })
          .where('username', '=', username)
          .execute();
      }
      if (input.groups !== undefined) {
        const known = input.groups.length
          ? await trx.selectFrom('groups').select('name').where('name', 'in', input.groups).execute()
          : [];
        const missing = input.groups.filter((g) => !known.some((k) => k.name === g));
        if (missing.length) throw new CofferError('invalid_request', `no such group: ${missing.join(', ')}`);
        await trx.deleteFrom('group_members').where('username', '=', username).execute();
        if (input.groups.length) {
          await trx
            .insertInto('group_members')
            .values(unique(input.groups).map((g) => ({ group_name: g, username })))
            .execute();
        }
      }
      return { created: !existing };
    });
  }

  async readUser(username: string): Promise<UserInfo> {
    const row = USERNAME.test(username)
      ? await this.db.selectFrom('users').select(['username', 'policies', 'created_at', 'updated_at']).where('username', '=', username).executeTakeFirst()
      : undefined;
    if (!row) throw new CofferError('not_found', `user ${username} does not exist`);
    const groups = await this.db.selectFrom('group_members').select('group_name').where('username', '=', username).orderBy('group_name').execute();
    return {
      username: row.username,
      policies: row.policies,
      groups: groups.map((g) => g.group_name),
      created_at: row.created_at.toISOString(),
      updated_at: row.updated_at.toISOString(),
    };
  }

  async listUsers(): Promise<string[]> {
    const rows = await this.db.selectFrom('users').select('username').orderBy('username').execute();
    return rows.map((r) => r.username);
  }

  /** Deletes the user and revokes every token they hold. */
  async deleteUser(username: string): Promise<void> {
    const result = USERNAME.test(username) ? await this.db.deleteFrom('users').where('username', '=', username).executeTakeFirst() : null;
    if (!result || Number(result.numDeletedRows) === 0) throw new CofferError('not_found', `user ${username} does not exist`);
    await this.tokens.revokeIdentity(`user:${username}`);
  }

  /** Lifts the user's login lockout on this server; true if one was in force. */
  unlock(username: string): boolean {
    checkName(username, USERNAME, 'usernames are 1-128 characters of A-Z, a-z, 0-9, ., _, @ and -');
    return this.guard.unlock(userSubject(username));
  }

  async putGroup(name: string, input: { policies?: string[] | undefined; members?: string[] | undefined }): Promise<{ created: boolean }> {
    checkName(name, GROUP_NAME, 'group names are 1-64 characters of a-z, 0-9, _ and -');
    try {
      return await this.db.transaction().execute(async (trx) => {
        const existing = await trx.selectFrom('groups').select('name').where('name', '=', name).forUpdate().executeTakeFirst();
        if (!existing) await trx.insertInto('groups').values({ name, policies: JSON.stringify(input.policies ?? []) }).execute();
        else if (input.policies !== undefined) await trx.updateTable('groups').set({ policies: JSON.stringify(input.policies) }).where('name', '=', name).execute();
        if (input.members !== undefined) {
          const members = unique(input.members);
          const known = members.length ? await trx.selectFrom('users').select('username').where('username', 'in', members).execute() : [];
          const missing = members.filter((m) => !known.some((k) => k.username === m));
          if (missing.length) throw new CofferError('invalid_request', `no such user: ${missing.join(', ')}`);
          await trx.deleteFrom('group_members').where('group_name', '=', name).execute();
          if (members.length) await trx.insertInto('group_members').values(members.map((username) => ({ group_name: name, username }))).execute();
        }
        return { created: !existing };
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('conflict', `group ${name} was changed concurrently; retry`);
      throw err;
    }
  }

  async readGroup(name: string): Promise<GroupInfo> {
    const row = GROUP_NAME.test(name) ? await this.db.selectFrom('groups').selectAll().where('name', '=', name).executeTakeFirst() : undefined;
    if (!row) throw new CofferError('not_found', `group ${name} does not exist`);
    const members = await this.db.selectFrom('group_members').select('username').where('group_name', '=', name).orderBy('username').execute();
    return { name: row.name, policies: row.policies, members: members.map((m) => m.username) };
  }

  async listGroups(): Promise<string[]> {
    const rows = await this.db.selectFrom('groups').select('name').orderBy('name').execute();
    return rows.map((r) => r.name);
  }

  async deleteGroup(name: string): Promise<void> {
    const result = GROUP_NAME.test(name) ? await this.db.deleteFrom('groups').where('name', '=', name).executeTakeFirst() : null;
    if (!result || Number(result.numDeletedRows) === 0) throw new CofferError('not_found', `group ${name} does not exist`);
  }

  private hash(password: string): Promise<string> {
    return argon2.hash(password, { type: argon2.argon2id, ...this.params });
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= this.hash('coffer: no such user');
    return this.dummyHash;
  }
}

const userSubject = (username: string) => `userpass:${username}`;

function checkName(name: string, re: RegExp, message: string): void {
  if (!re.test(name)) throw new CofferError('invalid_request', message);
}

export function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}
