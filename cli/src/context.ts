/**
 * What every command needs: the global options, an SDK client and output.
 *
 * Settings come from, highest first: flags, environment variables (COFFER_ADDR,
 * COFFER_TOKEN, COFFER_NAMESPACE; commander folds each flag and its variable into
 * one option), the selected profile of the config file, built-in defaults. The
 * token is looked up only by commands that send one, so `coffer status` works
 * with a misconfigured token file.
 */
import { CofferClient, checkNamespace, type FetchFn, type RetryInfo } from '@coffer/sdk';
import type { Command } from 'commander';
import { DEFAULT_ADDRESS, DEFAULT_PROFILE, configFilePath, readConfig, readTokenFile, resolveProfile, writeConfig, type ConfigFile, type Profile, type ResolvedProfile } from './config.js';
import { CliError, EXIT, usageError } from './errors.js';
import { nodeFetch } from './http-fetch.js';
import { json, yaml } from './output.js';
import { findProject, type Project } from './project.js';

export const CLI_VERSION = '0.1.0';

export type Format = 'table' | 'json' | 'yaml';

export interface GlobalOptions {
  addr?: string;
  token?: string;
  format: Format;
  namespace?: string;
  profile?: string;
  /** --max-retries / COFFER_MAX_RETRIES */
  maxRetries?: number;
  /** --retry-budget / COFFER_RETRY_BUDGET, in seconds */
  retryBudget?: number;
}

export class Context {
  private configCache: ConfigFile | undefined;
  private profileCache: ResolvedProfile | undefined;

  /** Whether this command has said it is waiting for the server (said once, however many clients it makes). */
  private retryNoticeShown = false;

  private constructor(readonly globals: GlobalOptions) {}

  /** The context of the command whose action is running (global options may follow the subcommand). */
  static of(cmd: Command): Context {
    return new Context(cmd.optsWithGlobals<GlobalOptions>());
  }

  config(): ConfigFile {
    return (this.configCache ??= readConfig());
  }

  /** Set by `coffer login`, which creates a missing profile (ensureProfile) instead of refusing it. */
  allowMissingProfile = false;

  profile(): ResolvedProfile {
    return (this.profileCache ??= resolveProfile(this.config(), this.globals.profile, this.allowMissingProfile));
  }

  /**
   * For `coffer login`: a profile named by --profile that does not exist yet is
   * created with the address (and namespace) in effect, so
   * `coffer --profile prod --addr URL login ...` sets a profile up in one step.
   */
  ensureProfile(): ResolvedProfile {
    const config = this.config();
    const profile = resolveProfile(config, this.globals.profile, true);
    if (profile.name !== DEFAULT_PROFILE && !config.profiles?.[profile.name]) {
      const settings: Profile = { address: this.globals.addr || DEFAULT_ADDRESS };
      if (this.globals.namespace) settings.namespace = this.globals.namespace;
      config.profiles = { ...config.profiles, [profile.name]: settings };
      writeConfig(config);
      process.stderr.write(`Created profile ${profile.name} (${settings.address}) in ${configFilePath()}\n`);
      profile.settings = settings;
    }
    this.profileCache = profile;
    return profile;
  }

  private projectCache: Project | null | undefined;

  /** The nearest .coffer.yaml (coffer setup), looked for only when a setting is not given by flag or env. */
  project(): Project | undefined {
    if (this.projectCache === undefined) this.projectCache = findProject() ?? null;
    return this.projectCache ?? undefined;
  }

  /** --addr / COFFER_ADDR, then .coffer.yaml, then the profile's address, then http://127.0.0.1:8200. */
  address(): string {
    return this.globals.addr || this.project()?.settings.address || this.profile().settings.address || DEFAULT_ADDRESS;
  }

  /**
   * The folder of run/export/secret list: the command's own argument, else
   * .coffer.yaml's folder when reading the project's namespace (a folder of one
   * namespace means nothing in another), else the namespace root.
   */
  folder(given: string | undefined, namespace: string): string {
    if (given !== undefined) return given;
    const settings = this.project()?.settings;
    return settings?.folder !== undefined && (settings.namespace === undefined || settings.namespace === namespace) ? settings.folder : '';
  }

  /**
   * A client; with `auth`, one that carries the token, which is then required. `fetch` lets a command watch its responses.
   * Retries follow the SDK's failover defaults unless --max-retries / --retry-budget say otherwise;
   * `retryBudgetMs` is a command's own default (one with a fallback copy need not wait out an outage).
   */
  client(options: { auth: boolean; fetch?: FetchFn; token?: string; retryBudgetMs?: number }): CofferClient {
    const token = options.token ?? (options.auth ? this.token() : undefined);
    const { maxRetries, retryBudget } = this.globals;
    const retryBudgetMs = retryBudget !== undefined ? retryBudget * 1000 : options.retryBudgetMs;
    return new CofferClient({
      address: this.address(),
      token,
      userAgent: `coffer-cli/${CLI_VERSION}`,
      fetch: options.fetch ?? nodeFetch,
      ...(maxRetries !== undefined ? { retries: maxRetries } : {}),
      ...(retryBudgetMs !== undefined ? { retryBudgetMs } : {}),
      onRetry: (retry) => this.retryNotice(retry),
    });
  }

  /**
   * A command that waits out a failover says so once on stderr, so that a mistyped address or
   * a stopped server does not look like a hang (stdout, which scripts read, is untouched).
   */
  private retryNotice(retry: RetryInfo): void {
    // A sealed server gets two quick retries (it waits for its operators): nothing to announce.
    if (this.retryNoticeShown || retry.error.code === 'sealed') return;
    this.retryNoticeShown = true;
    const seconds = Math.max(1, Math.ceil((retry.delayMs + retry.remainingMs) / 1000));
    process.stderr.write(`coffer: ${retry.error.message}; retrying for up to ${seconds} s (--retry-budget 0 or COFFER_RETRY_BUDGET=0 fails at once)\n`);
  }

  /** The namespace: -n/--namespace, COFFER_NAMESPACE, then .coffer.yaml, then the profile's namespace. */
  namespace(): string {
    const name = this.globals.namespace || this.project()?.settings.namespace || this.profile().settings.namespace;
    if (!name) {
      throw usageError(
        'no namespace: pass -n/--namespace NAME, set COFFER_NAMESPACE, run `coffer setup -n NAME` in the project, set a profile namespace, or use a coffer://namespace/path reference',
      );
    }
    return checkNamespace(name);
  }

  /** JSON or YAML of `value` with --format json|yaml, else the text `render` returns. */
  print(value: unknown, render: () => string): void {
    const format = this.globals.format;
    process.stdout.write(format === 'json' ? json(value) : format === 'yaml' ? yaml(value) : render());
  }

  /** --token, then COFFER_TOKEN, then the profile's token file. */
  token(): string {
    const token = this.globals.token || readTokenFile(this.profile().tokenFile);
    if (!token) {
      throw new CliError(`no token: run \`coffer login\`, set COFFER_TOKEN, or store one in ${this.profile().tokenFile} (mode 0600)`, EXIT.denied);
    }
    return token;
  }
}
