/** What exists only while unsealed: built around the root key by app/compose.ts, dropped on seal. */
import type { AppRoleService } from '../auth/approle.js';
import type { CertAuthService } from '../auth/cert.js';
import type { JwtAuthService } from '../auth/jwt.js';
import type { PolicyStore } from '../auth/policy-store.js';
import type { TokenService } from '../auth/tokens.js';
import type { UserpassService } from '../auth/userpass.js';
import type { Keyring } from '../keyring/keyring.js';
import type { ByokService } from '../kms/byok.js';
import type { EscrowService } from '../kms/escrow.js';
import type { KekLifecycle } from '../kms/kek-lifecycle.js';
import type { Kms } from '../kms/named-keys/index.js';
import type { NamespaceTransfer } from '../kms/namespace-transfer/index.js';
import type { NamespaceService } from '../secrets/namespace-service.js';
import type { SecretService } from '../secrets/secret-service.js';

export interface Services {
  keyring: Keyring;
  tokens: TokenService;
  namespaces: NamespaceService;
  secrets: SecretService;
  policies: PolicyStore;
  userpass: UserpassService;
  approle: AppRoleService;
  jwt: JwtAuthService;
  cert: CertAuthService;
  kek: KekLifecycle;
  byok: ByokService;
  escrow: EscrowService;
  /** Portable export and import of a whole namespace (issue 15). */
  namespaceTransfer: NamespaceTransfer;
  /** Named keys for applications: `kms.keys` administers them, `kms.ops` uses them. */
  kms: Kms;
}
