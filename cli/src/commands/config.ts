/** `coffer config show|set|unset|use`: profiles in config.json. */
import type { Command } from 'commander';
import { DEFAULT_ADDRESS, DEFAULT_PROFILE, checkProfileName, configFilePath, defaultTokenFile, readConfig, writeConfig, type Profile } from '../config.js';
import { Context } from '../context.js';
import { usageError } from '../errors.js';
import { table } from '../output.js';
import { examples } from './common.js';

const KEYS = ['address', 'namespace', 'token_file'] as const;
type Key = (typeof KEYS)[number];

function checkKey(key: string): Key {
  if (!(KEYS as readonly string[]).includes(key)) throw usageError(`unknown setting "${key}" (${KEYS.join(', ')})`);
  return key as Key;
}

export function registerConfig(program: Command): void {
  const config = examples(
    program
      .command('config')
      .description(
        'manage profiles in the config file ($XDG_CONFIG_HOME/coffer/config.json, else ~/.config/coffer/config.json; COFFER_CLI_CONFIG overrides). ' +
          'A profile holds address, namespace and token_file. Precedence: flags > COFFER_ADDR/COFFER_TOKEN/COFFER_NAMESPACE > profile > defaults. ' +
          'The profile is --profile, else COFFER_PROFILE, else default_profile, else "default".',
      ),
    'coffer config set address https://coffer.example.com',
    'coffer --profile prod config set address https://coffer.prod.example.com',
    'coffer config use prod',
    'coffer config show',
  );

  examples(
    config
      .command('show')
      .description('show every profile and which one is selected')
      .action((_opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const file = readConfig();
        const selected = ctx.globals.profile ?? file.default_profile ?? DEFAULT_PROFILE;
        const profiles = file.profiles ?? {};
        ctx.print({ file: configFilePath(), selected, ...file }, () => {
          const names = [...new Set([DEFAULT_PROFILE, ...Object.keys(profiles)])].sort();
          const rows = names.map((name) => {
            const p: Profile = profiles[name] ?? {};
            return [name === selected ? `* ${name}` : `  ${name}`, p.address ?? `(${DEFAULT_ADDRESS})`, p.namespace ?? '-', p.token_file ?? defaultTokenFile(name)];
          });
          return `Config file: ${configFilePath()}\n` + table(rows, ['  PROFILE', 'ADDRESS', 'NAMESPACE', 'TOKEN FILE']);
        });
      }),
    'coffer config show --format json',
  );

  examples(
    config
      .command('set')
      .description(`set a setting (${KEYS.join(', ')}) of the profile given by --profile (default: the selected one)`)
      .argument('<key>', KEYS.join(' | '))
      .argument('<value>')
      .action((keyArg: string, value: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const key = checkKey(keyArg);
        const file = readConfig();
        const name = checkProfileName(ctx.globals.profile ?? file.default_profile ?? DEFAULT_PROFILE);
        if (key === 'address' && !/^https?:\/\/[^\s]+$/.test(value)) throw usageError('address must be an http:// or https:// URL');
        file.profiles = { ...file.profiles, [name]: { ...file.profiles?.[name], [key]: value } };
        writeConfig(file);
        ctx.print({ profile: name, [key]: value }, () => `Profile ${name}: ${key} = ${value}\n`);
      }),
    'coffer config set namespace payments',
  );

  examples(
    config
      .command('unset')
      .description('remove a setting from the profile given by --profile (default: the selected one)')
      .argument('<key>', KEYS.join(' | '))
      .action((keyArg: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const key = checkKey(keyArg);
        const file = readConfig();
        const name = checkProfileName(ctx.globals.profile ?? file.default_profile ?? DEFAULT_PROFILE);
        const profile = { ...file.profiles?.[name] };
        delete profile[key];
        file.profiles = { ...file.profiles, [name]: profile };
        writeConfig(file);
        ctx.print({ profile: name, unset: key }, () => `Profile ${name}: ${key} removed\n`);
      }),
    'coffer config unset namespace',
  );

  examples(
    config
      .command('use')
      .description('make a profile the default (default_profile)')
      .argument('<profile>')
      .action((nameArg: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const name = checkProfileName(nameArg);
        const file = readConfig();
        if (name !== DEFAULT_PROFILE && !file.profiles?.[name]) throw usageError(`no profile "${name}" (create it: coffer --profile ${name} config set address URL)`);
        file.default_profile = name;
        writeConfig(file);
        ctx.print({ default_profile: name }, () => `Default profile: ${name}\n`);
      }),
    'coffer config use prod',
  );
}
