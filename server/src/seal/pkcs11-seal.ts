/**
 * The PKCS#11 seal: the root key is an AES-256 object in the token (label
 * <prefix>-v<root version>) that never leaves it; the HSM unseals the server,
 * and the operators hold recovery shares of a separate recovery key. BYOK
 * wrapping keys are generated in the same token.
 *
 * The token connection is opened on first use and dropped after a failed
 * unseal, so that the next attempt reconnects (the token may come back, or be
 * reconfigured).
 */
import { zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError, conflict } from '../errors.js';
import { HsmUnavailableError, Pkcs11Token, type Pkcs11Settings } from './pkcs11.js';
import { Pkcs11RootKey } from './pkcs11-root-key.js';
import type { RootKey } from './root-key.js';
import type { ImportDevice, NewRootKey, RootRef, Seal, SealCapabilities } from './seal.js';

const CAPABILITIES: SealCapabilities = { recoveryKeys: true, autoUnseal: true, keyImport: true, storedKeys: true };

export class Pkcs11Seal implements Seal {
  readonly type = 'pkcs11';
  readonly capabilities = CAPABILITIES;
  private token: Pkcs11Token | null = null;

  /** `settings` null: no token is configured (every use answers 503). */
  constructor(private readonly settings: (Pkcs11Settings & { keyLabel: string }) | null) {}

  /** The PKCS#11 token, opened on first use; 503 when none is configured or it cannot be reached. */
  private hsm(): Pkcs11Token {
    const settings = this.settings;
    if (!settings) {
      throw new CofferError('unavailable', 'no PKCS#11 token is configured (COFFER_PKCS11_MODULE, COFFER_PKCS11_TOKEN_LABEL, COFFER_PKCS11_PIN_FILE)');
    }
    this.token ??= Pkcs11Token.open(settings);
    return this.token;
  }

  private get hsmKeyLabelPrefix(): string {
    return this.settings?.keyLabel ?? 'coffer-root';
  }

  private rootLabel(version: number): string {
    return `${this.hsmKeyLabelPrefix}-v${version}`;
  }

  /** The token is reached before anything is written: unreachable → 503 and nothing changes. */
  async generateRoot(version: number, existing: 'refuse' | 'replace'): Promise<NewRootKey> {
    const token = this.hsm();
    const label = this.rootLabel(version);
    if (existing === 'refuse') {
      if (await token.findAesKey(label)) {
        throw conflict(
          'conflict',
          `the token already holds a key labelled "${label}" (another Coffer, or an interrupted init): set another COFFER_PKCS11_KEY_LABEL or delete that object`,
        );
      }
    } else {
      // A key under this label can only be left over from an interrupted rotation: not in effect.
      await token.destroyByLabel(label);
    }
    const handle = await token.generateRootKey(label);
    return stored(token, handle, version, label);
  }

  async importRoot(version: number, unwrapInto: (token: Pkcs11Token, label: string) => Promise<Buffer>): Promise<NewRootKey> {
    const token = this.hsm();
    const label = this.rootLabel(version);
    await token.destroyByLabel(label);
    const handle = await unwrapInto(token, label);
    return stored(token, handle, version, label);
  }

  async unsealRoot(config: RootRef): Promise<RootKey> {
    const token = this.hsm();
    const label = config.hsmKeyLabel ?? this.rootLabel(config.rootVersion);
    const handle = await token.findAesKey(label);
    if (!handle) throw new HsmUnavailableError(`the root key "${label}" is not on the token (wrong token, or the key was deleted)`);
    const root = new Pkcs11RootKey(token, handle, config.rootVersion, label);
    try {
      zeroize(await root.unwrapKey(config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check'));
    } catch (err) {
      if (err instanceof HsmUnavailableError) throw err;
      throw new HsmUnavailableError(`the key "${label}" on the token is not this server's root key`);
    }
    return root;
  }

  async removeOlderRoots(current: number): Promise<void> {
    const token = this.hsm();
    const prefix = `${this.hsmKeyLabelPrefix}-v`;
    for (const label of await token.listSecretKeyLabels(prefix)) {
      const version = Number(label.slice(prefix.length));
      if (Number.isInteger(version) && version < current) await token.destroyByLabel(label);
    }
  }

  /** The new key object in the token, named by seal_config. */
  async followRoot(config: RootRef): Promise<RootKey> {
    const token = this.hsm();
    const label = config.hsmKeyLabel ?? this.rootLabel(config.rootVersion);
    const handle = await token.findAesKey(label);
    if (!handle) throw new HsmUnavailableError(`the root key "${label}" is not on the token`);
    const next = new Pkcs11RootKey(token, handle, config.rootVersion, label);
    zeroize(await next.unwrapKey(config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check'));
    return next;
  }

  async retire(previous: RootKey): Promise<void> {
    if (previous instanceof Pkcs11RootKey) {
      // After the commit: a crash before this line leaves an unused object that the next unseal removes.
      await this.hsm().destroyByLabel(previous.label).catch(() => undefined);
    } else {
      previous.destroy();
    }
  }

  importDevice(): ImportDevice {
    const token = this.hsm();
    return {
      token,
      keyLabel: (id) => `${this.hsmKeyLabelPrefix}-import-${id}`,
      namedKeyLabel: (...parts) => `${this.hsmKeyLabelPrefix}-kms-${parts.join('-')}`,
    };
  }

  disconnect(): void {
    this.token?.close();
    this.token = null;
  }
}

function stored(token: Pkcs11Token, handle: Buffer, version: number, label: string): NewRootKey {
  return {
    root: new Pkcs11RootKey(token, handle, version, label),
    bytes: null,
    label,
    discard: () => token.destroyObject(handle).catch(() => undefined),
  };
}
