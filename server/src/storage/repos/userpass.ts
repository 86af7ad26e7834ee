/**
 * users, groups and group_members: the userpass identities. Password hashes
 * are computed and checked by auth/userpass.ts; this module stores them.
 *
 * The `lock…` functions take the row FOR UPDATE inside the caller's
 * transaction: two changes of the same user (or group) run one after the
 * other, so "did it exist" and the membership rewrite that follows belong to
 * one writer. A name with no row yet locks nothing; a concurrent first insert
 * then fails on the primary key (a unique violation the caller reports).
 */
import type { Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';
import { transactor } from './transaction.js';

export function userpassRepo(db: Kysely<Database>) {
  return {
    transaction: transactor(db),

    // --- users ---

    /** What a login checks. */
    async credentials(username: string, tx: Executor = db) {
      return tx.selectFrom('users').select(['username', 'password_hash', 'policies']).where('username', '=', username).executeTakeFirst();
    },

    /** A rehash with stronger parameters after a successful login. */
    async setPasswordHash(username: string, hash: string, tx: Executor = db): Promise<void> {
      await tx.updateTable('users').set({ password_hash: hash }).where('username', '=', username).execute();
    },

    async findUser(username: string, tx: Executor = db) {
      return tx.selectFrom('users').select(['username', 'policies', 'created_at', 'updated_at']).where('username', '=', username).executeTakeFirst();
    },

    async usernames(tx: Executor = db): Promise<string[]> {
      const rows = await tx.selectFrom('users').select('username').orderBy('username').execute();
      return rows.map((r) => r.username);
    },

    /** Of `usernames`, those that exist (no query for none). */
    async existingUsers(usernames: string[], tx: Executor = db): Promise<string[]> {
      if (usernames.length === 0) return [];
      const rows = await tx.selectFrom('users').select('username').where('username', 'in', usernames).execute();
      return rows.map((r) => r.username);
    },

    /** Whether the user exists, locked until the transaction ends (see the header). */
    async lockUser(username: string, tx: Executor): Promise<boolean> {
      return (await tx.selectFrom('users').select('username').where('username', '=', username).forUpdate().executeTakeFirst()) !== undefined;
    },

    async insertUser(user: { username: string; passwordHash: string; policies: string[] }, tx: Executor = db): Promise<void> {
      await tx
        .insertInto('users')
        .values({ username: user.username, password_hash: user.passwordHash, policies: JSON.stringify(user.policies) })
        .execute();
    },

    /** Changes what is given (and the update time). */
    async updateUser(username: string, change: { passwordHash?: string | undefined; policies?: string[] | undefined }, tx: Executor = db): Promise<void> {
      await tx
        .updateTable('users')
        .set({
          ...(change.passwordHash !== undefined ? { password_hash: change.passwordHash } : {}),
          ...(change.policies !== undefined ? { policies: JSON.stringify(change.policies) } : {}),
          updated_at: new Date(),
        })
        .where('username', '=', username)
        .execute();
    },

    /** True if the user existed. Memberships go with it (foreign key, on delete cascade). */
    async deleteUser(username: string, tx: Executor = db): Promise<boolean> {
      const result = await tx.deleteFrom('users').where('username', '=', username).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },

    // --- groups ---

    async findGroup(name: string, tx: Executor = db) {
      return tx.selectFrom('groups').selectAll().where('name', '=', name).executeTakeFirst();
    },

    async groupNames(tx: Executor = db): Promise<string[]> {
      const rows = await tx.selectFrom('groups').select('name').orderBy('name').execute();
      return rows.map((r) => r.name);
    },

    /** Of `names`, the groups that exist (no query for none). */
    async existingGroups(names: string[], tx: Executor = db): Promise<string[]> {
      if (names.length === 0) return [];
      const rows = await tx.selectFrom('groups').select('name').where('name', 'in', names).execute();
      return rows.map((r) => r.name);
    },

    /** Whether the group exists, locked until the transaction ends (see the header). */
    async lockGroup(name: string, tx: Executor): Promise<boolean> {
      return (await tx.selectFrom('groups').select('name').where('name', '=', name).forUpdate().executeTakeFirst()) !== undefined;
    },

    async insertGroup(name: string, policies: string[], tx: Executor = db): Promise<void> {
      await tx.insertInto('groups').values({ name, policies: JSON.stringify(policies) }).execute();
    },

    async setGroupPolicies(name: string, policies: string[], tx: Executor = db): Promise<void> {
      await tx.updateTable('groups').set({ policies: JSON.stringify(policies) }).where('name', '=', name).execute();
    },

    /** True if the group existed. */
    async deleteGroup(name: string, tx: Executor = db): Promise<boolean> {
      const result = await tx.deleteFrom('groups').where('name', '=', name).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },

    // --- memberships ---

    /** The groups of a user with their policies: what a login adds to the user's own. */
    async groupsOf(username: string, tx: Executor = db) {
      return tx
        .selectFrom('group_members')
        .innerJoin('groups', 'groups.name', 'group_members.group_name')
        .select(['groups.name', 'groups.policies'])
        .where('group_members.username', '=', username)
        .execute();
    },

    async groupNamesOf(username: string, tx: Executor = db): Promise<string[]> {
      const rows = await tx.selectFrom('group_members').select('group_name').where('username', '=', username).orderBy('group_name').execute();
      return rows.map((r) => r.group_name);
    },

    async membersOf(group: string, tx: Executor = db): Promise<string[]> {
      const rows = await tx.selectFrom('group_members').select('username').where('group_name', '=', group).orderBy('username').execute();
      return rows.map((r) => r.username);
    },

    /** Replaces the user's memberships with `groups` (distinct names): two statements, so inside the caller's transaction. */
    async setUserGroups(username: string, groups: string[], tx: Executor): Promise<void> {
      await tx.deleteFrom('group_members').where('username', '=', username).execute();
      if (groups.length) await tx.insertInto('group_members').values(groups.map((g) => ({ group_name: g, username }))).execute();
    },

    /** Replaces the group's members with `usernames` (distinct names): two statements, so inside the caller's transaction. */
    async setGroupMembers(group: string, usernames: string[], tx: Executor): Promise<void> {
      await tx.deleteFrom('group_members').where('group_name', '=', group).execute();
      if (usernames.length) await tx.insertInto('group_members').values(usernames.map((username) => ({ group_name: group, username }))).execute();
    },
  };
}

export type UserpassRepo = ReturnType<typeof userpassRepo>;
