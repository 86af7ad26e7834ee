export type Layer = 'entry' | 'config' | 'http' | 'vault' | 'service' | 'keyring' | 'seal' | 'crypto' | 'storage' | 'shared';

export interface Source {
  /** Path below server/src, '/'-separated. */
  file: string;
  text: string;
}

export interface LayerViolation {
  from: string;
  /** A path below server/src, or a package name. */
  to: string;
  why: string;
}

export interface SqlFile {
  file: string;
  lines: Array<{ line: number; what: string }>;
}

export interface Allowlist {
  layers: ReadonlyArray<{ from: string; to: string }>;
  sql: ReadonlyArray<{ file: string }>;
}

export interface ArchitectureResult {
  layer: LayerViolation[];
  sql: SqlFile[];
  newLayer: LayerViolation[];
  newSql: SqlFile[];
  staleLayer: Array<{ from: string; to: string }>;
  staleSql: Array<{ file: string }>;
}

export function layerOf(file: string): Layer | null;
export function readSources(srcDir: string): Source[];
export function importsOf(text: string): string[];
export function layerViolations(sources: readonly Source[]): LayerViolation[];
export function sqlIn(text: string): Array<{ line: number; what: string }>;
/** Lines in vault/ or core.ts that branch on a seal's name or class. */
export function sealNameChecks(sources: readonly Source[]): Array<{ file: string; line: number }>;
export function sqlOutsideStorage(sources: readonly Source[]): SqlFile[];
export function checkArchitecture(sources: readonly Source[], allow: Allowlist): ArchitectureResult;
export function formatReport(result: ArchitectureResult): string;
