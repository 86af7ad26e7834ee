/**
 * Users with passwords, and groups that give their members policies.
 *
 * Passwords are hashed with argon2id (OWASP's minimum: m=19 MiB, t=2, p=1, or
 * whatever the server is configured with); the PHC string keeps the
 * parameters with the hash, so raising them later rehashes each user at their
 * next successful login. Argon2 runs only here, never on the request path.
 */
import argon2 from 'argon2';
import { CofferError, conflict } from '../errors.js';
import { isUniqueViolation } from '../storage/errors.js';
import type { UserpassRepo } from '../storage/repos/userpass.js';
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
    private readonly repo: UserpassRepo,
    private readonly tokens: TokenService,
    private readonly guard: LoginGuard,
    private readonly params: Argon2Params,
  ) {}

  async login(username: string, password: string, client: string): Promise<AuthResponse> {
    const subject = userSubject(username);
    await this.guard.check(client, subject);
    const row = USERNAME.test(username)
      ? await this.repo.credentials(username)
      : undefined;
    // argon2.verify compares in constant time; an unknown user costs the same argon2 run.
    const ok = await argon2.verify(row?.password_hash ?? (await this.dummy()), password).catch(() => false);
    if (!row || !ok) {
      await this.guard.failure(client, subject);
      throw loginFailed();
    }
    await this.guard.success(client, subject);
    if (argon2.needsRehash(row.password_hash, { ...this.params })) {
      const hash = await this.hash(password);
      await this.repo.setPasswordHash(username, hash);
    }
    const groups = await this.repo.groupsOf(username);
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
    return this.repo.transaction(async (trx) => {
      const existed = await this.repo.lockUser(username, trx);
      if (!existed) {
        if (hash === undefined) throw new CofferError('invalid_request', 'a new user needs a password');
        await this.repo.insertUser({ username, passwordHash: hash, policies: input.policies ?? [] }, trx);
      } else {
        await this.repo.updateUser(username, { passwordHash: hash, policies: input.policies }, trx);
      }
      if (input.groups !== undefined) {
        const known = await this.repo.existingGroups(input.groups, trx);
        const missing = input.groups.filter((g) => !known.includes(g));
        if (missing.length) throw new CofferError('invalid_request', `no such group: ${missing.join(', ')}`);
        await this.repo.setUserGroups(username, unique(input.groups), trx);
      }
      return { created: !existed };
    });
  }

  async readUser(username: string): Promise<UserInfo> {
    const row = USERNAME.test(username)
      ? await this.repo.findUser(username)
      : undefined;
    if (!row) throw new CofferError('not_found', `user ${username} does not exist`);
    const groups = await this.repo.groupNamesOf(username);
    return {
      username: row.username,
      policies: row.policies,
      groups,
      created_at: row.created_at.toISOString(),
      updated_at: row.updated_at.toISOString(),
    };
  }

  async listUsers(): Promise<string[]> {
    return this.repo.usernames();
  }

  /** Deletes the user and revokes every token they hold. */
  async deleteUser(username: string): Promise<void> {
    const deleted = USERNAME.test(username) && (await this.repo.deleteUser(username));
    if (!deleted) throw new CofferError('not_found', `user ${username} does not exist`);
    await this.tokens.revokeIdentity(`user:${username}`);
  }

  /** Lifts the user's login lockout (on every server sharing the database); true if one was in force. */
  unlock(username: string): Promise<boolean> {
    checkName(username, USERNAME, 'usernames are 1-128 characters of A-Z, a-z, 0-9, ., _, @ and -');
    return this.guard.unlock(userSubject(username));
  }

  async putGroup(name: string, input: { policies?: string[] | undefined; members?: string[] | undefined }): Promise<{ created: boolean }> {
    checkName(name, GROUP_NAME, 'group names are 1-64 characters of a-z, 0-9, _ and -');
    try {
      return await this.repo.transaction(async (trx) => {
        const existed = await this.repo.lockGroup(name, trx);
        if (!existed) await this.repo.insertGroup(name, input.policies ?? [], trx);
        else if (input.policies !== undefined) await this.repo.setGroupPolicies(name, input.policies, trx);
        if (input.members !== undefined) {
          const members = unique(input.members);
          const known = await this.repo.existingUsers(members, trx);
          const missing = members.filter((m) => !known.includes(m));
          if (missing.length) throw new CofferError('invalid_request', `no such user: ${missing.join(', ')}`);
          await this.repo.setGroupMembers(name, members, trx);
        }
        return { created: !existed };
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('conflict', `group ${name} was changed concurrently; retry`);
      throw err;
    }
  }

  async readGroup(name: string): Promise<GroupInfo> {
    const row = GROUP_NAME.test(name) ? await this.repo.findGroup(name) : undefined;
    if (!row) throw new CofferError('not_found', `group ${name} does not exist`);
    const members = await this.repo.membersOf(name);
    return { name: row.name, policies: row.policies, members };
  }

  async listGroups(): Promise<string[]> {
    return this.repo.groupNames();
  }

  async deleteGroup(name: string): Promise<void> {
    const deleted = GROUP_NAME.test(name) && (await this.repo.deleteGroup(name));
    if (!deleted) throw new CofferError('not_found', `group ${name} does not exist`);
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
