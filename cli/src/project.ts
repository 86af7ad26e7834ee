/**
 * Per-directory settings, like `doppler setup` / `infisical init`: a `.coffer.yaml`
 * in the working directory or any directory above it gives the address,
 * namespace and folder for commands run there. Below flags and COFFER_*
 * variables, above the profile: the project knows better than a user-wide default.
 * Nothing secret belongs in it (no token): it is meant to be committed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { checkNamespace, normalizeFolder } from '@coffer/sdk';
import { CliError } from './errors.js';

export const PROJECT_FILE = '.coffer.yaml';
export const PROJECT_KEYS = ['address', 'namespace', 'folder'] as const;

export interface ProjectSettings {
  address?: string;
  namespace?: string;
  folder?: string;
}

export interface Project {
  file: string;
  settings: ProjectSettings;
}

/** The nearest .coffer.yaml from `dir` upwards, or undefined (a few stat calls; the YAML parser loads only when one exists). */
export function findProject(dir = process.cwd()): Project | undefined {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    const file = path.join(current, PROJECT_FILE);
    if (existsSync(file)) return { file, settings: readProject(file) };
    if (path.dirname(current) === current) return undefined;
  }
}

export function parseYaml(text: string): unknown {
  const require = createRequire(import.meta.url);
  return (require('yaml') as typeof import('yaml')).parse(text);
}

function readProject(file: string): ProjectSettings {
  const bad = (why: string) => new CliError(`${file}: ${why}`);
  let value: unknown;
  try {
    value = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    if (err instanceof Error && 'linePos' in err) throw bad(`not valid YAML (${err.message.split('\n')[0]})`);
    throw bad(`cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw bad('expected a mapping of address, namespace, folder');
  const settings: ProjectSettings = {};
  for (const [key, v] of Object.entries(value)) {
    if (!(PROJECT_KEYS as readonly string[]).includes(key)) throw bad(`unknown setting "${key}" (${PROJECT_KEYS.join(', ')})`);
    if (typeof v !== 'string') throw bad(`${key} must be a string`);
    settings[key as keyof ProjectSettings] = v;
  }
  if (settings.namespace !== undefined) {
    try {
      checkNamespace(settings.namespace);
    } catch (err) {
      throw bad(`namespace: ${(err as Error).message}`);
    }
  }
  if (settings.folder !== undefined) {
    try {
      settings.folder = normalizeFolder(settings.folder);
    } catch (err) {
      throw bad(`folder: ${(err as Error).message}`);
    }
  }
  return settings;
}
