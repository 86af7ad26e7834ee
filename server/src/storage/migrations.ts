/**
 * The one migration set, run on PostgreSQL and PGlite alike. Migrations are
 * append-only: never edit one that has shipped, add the next.
 */
import { sql, type Kysely } from 'kysely';
import type { Migration, MigrationProvider } from 'kysely/migration';

const migrations: Record<string, Migration> = {
  '0001_foundation': {
    async up(db: Kysely<unknown>) {
      // One statement per call: PGlite's extended protocol takes one at a time.
      for (const statement of [
        `create table seal_config (
          id int primary key check (id = 1),
          seal_type text not null,
          shares int not null,
          threshold int not null,
          root_version int not null,
          root_check bytea not null,
          created_at timestamptz not null default now()
        )`,
        `create table system_keys (
          name text not null,
          version int not null,
          wrapped_key bytea not null,
          root_version int not null,
          created_at timestamptz not null default now(),
          primary key (name, version)
        )`,
        `create table namespaces (
          id uuid primary key,
          name text collate "C" not null unique,
          description text not null default '',
          current_kek_version int not null,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now()
        )`,
        `create table namespace_keys (
          namespace_id uuid not null references namespaces (id) on delete cascade,
          version int not null,
          wrapped_key bytea,
          root_version int not null,
          origin text not null check (origin in ('generated', 'external')),
          state text not null check (state in ('active', 'retired', 'destroyed')),
          created_at timestamptz not null default now(),
          primary key (namespace_id, version)
        )`,
        `create table secrets (
          id uuid primary key,
          namespace_id uuid not null references namespaces (id) on delete cascade,
          path text collate "C" not null,
          current_version int not null,
          max_versions int not null,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          unique (namespace_id, path)
        )`,
        `create table secret_versions (
          secret_id uuid not null references secrets (id) on delete cascade,
          version int not null,
          type text not null,
          metadata jsonb not null default '{}',
          kek_version int,
          wrapped_dek bytea,
          ciphertext bytea,
          created_at timestamptz not null default now(),
          deleted_at timestamptz,
          destroyed_at timestamptz,
          primary key (secret_id, version)
        )`,
        `create table tokens (
          accessor text primary key,
          identity text not null,
          display_name text not null,
          policies jsonb not null,
          created_at timestamptz not null default now(),
          expires_at timestamptz,
          revoked_at timestamptz
        )`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0002_audit': {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        // One row per audited request. `body` is the exact JSON that was hashed (jsonb would
        // reorder keys); the other columns are copies of its fields for searching.
        `create table audit_log (
          seq bigint primary key,
          time timestamptz not null,
          request_id text not null,
          identity text,
          action text not null,
          namespace text,
          path text,
          outcome text not null,
          status int not null,
          body text not null,
          prev_hash bytea not null,
          hash bytea not null
        )`,
        `create index audit_log_time on audit_log (time)`,
        `create index audit_log_identity on audit_log (identity, seq)`,
        `create index audit_log_namespace on audit_log (namespace, seq)`,
        // Signed statements "the chain up to seq has hash H", so truncation is detectable.
        `create table audit_checkpoints (
          seq bigint primary key,
          hash bytea not null,
          time timestamptz not null,
          signature bytea not null
        )`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0003_identity': {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        `alter table tokens add column metadata jsonb not null default '{}'`,
        `alter table tokens add column renewable boolean not null default false`,
        `alter table tokens add column max_expires_at timestamptz`,
        `alter table tokens add column ttl_seconds int`,
        `create index tokens_identity on tokens (identity)`,
        `create index tokens_revoked_at on tokens (revoked_at) where revoked_at is not null`,
        `create table policies (
          name text collate "C" primary key,
          rules jsonb not null,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now()
        )`,
        // Password hashes are PHC strings ($argon2id$v=19$m=…,t=…,p=…$salt$hash): the parameters travel with the hash.
        `create table users (
          username text collate "C" primary key,
          password_hash text not null,
          policies jsonb not null default '[]',
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now()
        )`,
        `create table groups (
          name text collate "C" primary key,
          policies jsonb not null default '[]',
          created_at timestamptz not null default now()
        )`,
        `create table group_members (
          group_name text collate "C" not null references groups (name) on delete cascade,
          username text collate "C" not null references users (username) on delete cascade,
          primary key (group_name, username)
        )`,
        `create index group_members_user on group_members (username)`,
        `create table approle_roles (
          name text collate "C" primary key,
          role_id text not null unique,
          config jsonb not null,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now()
        )`,
        // secret_ids are 256 random bits, so a SHA-256 is enough to store them (no slow hash needed).
        `create table approle_secret_ids (
          accessor text primary key,
          role_name text collate "C" not null references approle_roles (name) on delete cascade,
          secret_hash bytea not null unique,
          cidrs jsonb not null default '[]',
          uses_remaining int,
          expires_at timestamptz,
          created_at timestamptz not null default now()
        )`,
        `create table jwt_issuers (
          name text collate "C" primary key,
          config jsonb not null,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now()
        )`,
        `create table cert_roles (
          name text collate "C" primary key,
          config jsonb not null,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now()
        )`,
        `create table jwt_roles (
          name text collate "C" primary key,
          issuer text collate "C" not null references jwt_issuers (name),
          config jsonb not null,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now()
        )`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0004_kek_lifecycle': {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        // 'retiring': an older version some DEKs still reference while the rewrap job runs;
        // 'retired': no DEK references it any more (its wrapped KEK is kept until the namespace is shredded).
        `alter table namespace_keys drop constraint namespace_keys_state_check`,
        `alter table namespace_keys add constraint namespace_keys_state_check
          check (state in ('active', 'retiring', 'retired', 'destroyed'))`,
        // Encryptions (DEK wraps) under this version, counted in reserved blocks: never under-counted.
        `alter table namespace_keys add column encryptions bigint not null default 0`,
        `alter table namespace_keys add column retired_at timestamptz`,
        `alter table namespace_keys add column destroyed_at timestamptz`,
        // Scheduled rotation: a new KEK version every this many seconds (null = manual only).
        `alter table namespaces add column rotation_period_seconds int`,
        // Crypto-shredding: while deletion_date is set the namespace is disabled; at that date it is destroyed.
        `alter table namespaces add column deletion_requested_at timestamptz`,
        `alter table namespaces add column deletion_date timestamptz`,
        // One rewrap job per namespace, moving every DEK to target_version. cursor_path is the last
        // secret path whose versions are all rewrapped; it moves in the same transaction as the rows.
        `create table kek_rewrap_jobs (
          namespace_id uuid primary key references namespaces (id) on delete cascade,
          target_version int not null,
          state text not null check (state in ('running', 'completed')),
          cursor_path text collate "C",
          total bigint not null,
          rewrapped bigint not null default 0,
          started_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          completed_at timestamptz
        )`,
        `create index namespaces_deletion_date on namespaces (deletion_date) where deletion_date is not null`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0005_seal_hsm': {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        // PKCS#11 seal: the label of the root key object in effect, and the check value of the
        // recovery key (whose Shamir shares authorise seal migration while the HSM seals).
        `alter table seal_config add column hsm_key_label text`,
        `alter table seal_config add column recovery_check bytea`,
        // Shamir rekey in two steps: the next root key waits here, wrapped by the current one,
        // until the operators prove they hold its new shares (a lost response loses nothing).
        `alter table seal_config add column pending_root bytea`,
        `alter table seal_config add column pending_shares int`,
        `alter table seal_config add column pending_threshold int`,
        // The root key in effect wrapped by the one before it (when it is a software key): other
        // servers sharing the database, still holding the previous root, follow the rotation with it.
        `alter table seal_config add column root_chain bytea`,
        // Nothing can be stored under a root version that is not in effect: a KEK wrapped under the
        // old root by a request racing a rotation fails to insert (and is retried) instead of being
        // committed under a root key about to be destroyed. Deferred, because a rotation moves the
        // rows and seal_config.root_version in one transaction.
        `alter table seal_config add constraint seal_config_root_version_key unique (root_version)`,
        `alter table namespace_keys add constraint namespace_keys_root_version_fkey
          foreign key (root_version) references seal_config (root_version) deferrable initially deferred`,
        `alter table system_keys add constraint system_keys_root_version_fkey
          foreign key (root_version) references seal_config (root_version) deferrable initially deferred`,
        // BYOK: an RSA-3072 wrapping key per import, usable once, until expires_at.
        // The private key is in the HSM (hsm_label) or wrapped by the root key (wrapped_private_key).
        `create table import_keys (
          id uuid primary key,
          target text not null check (target in ('namespace', 'root')),
          namespace_id uuid references namespaces (id) on delete cascade,
          algorithm text not null,
          public_key text not null,
          hsm_label text,
          wrapped_private_key bytea,
          root_version int,
          created_by text not null,
          created_at timestamptz not null default now(),
          expires_at timestamptz not null,
          used_at timestamptz
        )`,
        // Escrow export: requested by one admin, approved by another, downloaded once.
        `create table escrow_requests (
          id uuid primary key,
          namespace_id uuid not null references namespaces (id) on delete cascade,
          kek_version int not null,
          algorithm text not null,
          public_key text not null,
          requested_by text not null,
          approved_by text,
          state text not null check (state in ('pending', 'approved', 'downloaded')),
          created_at timestamptz not null default now(),
          expires_at timestamptz not null,
          approved_at timestamptz,
          downloaded_at timestamptz
        )`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0006_no_root_from_login': {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        // No login yields root any more (the token service strips it); rows that still name it
        // would only say something untrue, and would have let a non-root admin reach root by
        // resetting such a user's password, joining such a group or minting a role's secret_id.
        `update users set policies = policies - 'root' where policies @> '["root"]'::jsonb`,
        `update groups set policies = policies - 'root' where policies @> '["root"]'::jsonb`,
        ...['approle_roles', 'jwt_roles', 'cert_roles'].map(
          (table) => `update ${table} set config = jsonb_set(config, '{policies}', (config -> 'policies') - 'root')
            where config -> 'policies' @> '["root"]'::jsonb`,
        ),
        // Root tokens that did not come from init/generate-root (identity 'root') or from a root
        // token's token/create were obtained through a login: revoke them.
        `update tokens set revoked_at = now()
          where revoked_at is null and policies @> '["root"]'::jsonb
            and identity <> 'root' and coalesce(metadata ->> 'created_by', '') <> 'root'`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0007_audit_intents': {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        // Write-ahead audit: a request that may change state records its intent here before its
        // handler runs; the statement that appends its entry deletes the row. A row left behind
        // (the append failed, the process died) is turned into an entry by the recovery pass, so
        // no committed change is left without one. draft is the entry as known before the
        // handler ran (JSON; no secret value, like every entry).
        `create table audit_intents (
          request_id text primary key,
          owner text not null,
          time timestamptz not null,
          recorded_at timestamptz not null default now(),
          claimed_by text,
          claimed_at timestamptz,
          draft text not null
        )`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0008_kms_keys': {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        // Named keys for applications (kms/named-keys). Configuration only: the key material is in
        // kms_key_versions. exportable and export_locked are one-way switches (the service refuses
        // to turn them back; the check keeps them from being both). min_encryption_version 0 = no minimum.
        `create table kms_keys (
          id uuid primary key,
          namespace_id uuid not null references namespaces (id) on delete cascade,
          name text collate "C" not null,
          type text not null check (type in ('aes256-gcm', 'xchacha20-poly1305', 'hmac-sha256', 'hmac-sha512',
            'ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096')),
          latest_version int not null,
          min_decryption_version int not null default 1,
          min_encryption_version int not null default 0,
          exportable boolean not null default false,
          export_locked boolean not null default false,
          deletion_allowed boolean not null default false,
          auto_rotate_period_seconds int,
          origin text not null check (origin in ('internal', 'external')),
          hsm boolean not null default false,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          unique (namespace_id, name),
          unique (id, namespace_id),
          check (not (exportable and export_locked)),
          check (min_decryption_version >= 1 and min_encryption_version >= 0)
        )`,
        // One row per key version: its material (raw key bytes, or PKCS#8 DER of a private key)
        // wrapped by a namespace KEK version, AAD binding namespace, key id, key name, type,
        // version and KEK version (crypto/context.ts aad.kmsKey), so a row moved to another key,
        // namespace or version fails to unwrap. Crypto-shredding the namespace deletes its KEK
        // rows and, through the cascade, these.
        `create table kms_key_versions (
          key_id uuid not null,
          version int not null,
          namespace_id uuid not null,
          kek_version int not null,
          wrapped_material bytea not null,
          created_at timestamptz not null default now(),
          primary key (key_id, version),
          foreign key (key_id, namespace_id) references kms_keys (id, namespace_id) on delete cascade,
          foreign key (namespace_id, kek_version) references namespace_keys (namespace_id, version) on delete cascade
        )`,
        // The KEK rewrap of a namespace looks its key versions up by KEK version.
        `create index kms_key_versions_kek on kms_key_versions (namespace_id, kek_version)`,
        // Scheduled rotation finds keys with a period.
        `create index kms_keys_auto_rotate on kms_keys (auto_rotate_period_seconds) where auto_rotate_period_seconds is not null`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0009_login_failures': {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        // Login failures shared by every server on this database (auth/login-guard.ts), so N servers
        // do not give a guesser N times the budget. One row per (subject, client address or /64);
        // client '' is the subject's count across all clients (the ceiling that locks it for everyone).
        `create table login_failures (
          subject text collate "C" not null,
          client text collate "C" not null,
          failures int not null check (failures >= 1),
          locked_until timestamptz,
          updated_at timestamptz not null default now(),
          primary key (subject, client)
        )`,
        // Pruning finds rows nobody has failed on for a while.
        `create index login_failures_updated on login_failures (updated_at)`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  '0010_job_leases': {
    async up(db: Kysely<unknown>) {
      // The fencing token of each background job (storage/job-fence.ts): whoever takes a job's
      // cluster lock bumps its epoch; a job's transaction commits only while the epoch is still
      // the one its holder took, so a paused ex-leader cannot write after another server took over.
      await sql
        .raw(
          `create table job_leases (
            job text collate "C" primary key,
            epoch bigint not null check (epoch >= 1),
            holder text not null,
            acquired_at timestamptz not null default now()
          )`,
        )
        .execute(db);
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
