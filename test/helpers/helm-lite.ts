// A small renderer for the Go-template subset that deploy/helm/coffer uses, so the chart's test
// needs no `helm` binary (none is packaged for this machine). It follows Helm's semantics for what
// it supports — whitespace trimming, define/include, if/else, with, range, `$`, pipelines, and the
// functions below — and throws on anything else, so a template using more fails loudly here
// instead of rendering wrongly. When a real `helm` is at hand (COFFER_HELM or PATH), the chart
// test also compares both renderings.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

type Value = unknown;
type Dict = Record<string, Value>;

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; expr: string }
  | { kind: 'if' | 'with'; expr: string; then: Node[]; else: Node[] }
  | { kind: 'range'; expr: string; body: Node[] };

interface Scope {
  dot: Value;
  root: Value;
}

const isDict = (v: Value): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Go's truth: false, 0, nil, and empty strings, lists and maps are false. */
function truthy(v: Value): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isDict(v)) return Object.keys(v).length > 0;
  return true;
}

/** Splits a template into text and `{{ }}` actions, applying `{{-` and `-}}` trimming. */
function lex(src: string): Array<{ text: string } | { action: string }> {
  const out: Array<{ text: string } | { action: string }> = [];
  let pos = 0;
  let trimNext = false;
  while (pos < src.length) {
    const open = src.indexOf('{{', pos);
    let text = src.slice(pos, open === -1 ? src.length : open);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (open === -1) {
      out.push({ text });
      break;
    }
    const close = src.indexOf('}}', open);
    if (close === -1) throw new Error(`unclosed action at ${open}`);
    let inner = src.slice(open + 2, close);
    if (/^-\s/.test(inner)) {
      text = text.replace(/\s+$/, '');
      inner = inner.slice(1);
    }
    trimNext = /\s-$/.test(inner);
    if (trimNext) inner = inner.slice(0, -1);
    out.push({ text });
    const action = inner.trim();
    if (!(action.startsWith('/*') && action.endsWith('*/'))) out.push({ action });
    pos = close + 2;
  }
  return out;
}

/** Builds the node tree; `define` blocks go into `defines`. */
function parse(src: string, defines: Map<string, Node[]>): Node[] {
  const tokens = lex(src);
  let i = 0;
  const block = (stopAt: string[]): { nodes: Node[]; stop: string } => {
    const nodes: Node[] = [];
    while (i < tokens.length) {
      const t = tokens[i++]!;
      if ('text' in t) {
        if (t.text) nodes.push({ kind: 'text', text: t.text });
        continue;
      }
      const [word, ...rest] = t.action.split(/\s+/);
      const expr = rest.join(' ');
      if (stopAt.includes(t.action) || (word === 'else' && stopAt.includes('else'))) {
        if (t.action !== 'end' && t.action !== 'else') throw new Error(`unsupported: {{${t.action}}}`);
        return { nodes, stop: t.action };
      }
      if (word === 'if' || word === 'with') {
        const then = block(['else', 'end']);
        const otherwise = then.stop === 'else' ? block(['end']).nodes : [];
        nodes.push({ kind: word, expr, then: then.nodes, else: otherwise });
      } else if (word === 'range') {
        if (expr.includes(':=')) throw new Error('unsupported: range with variables');
        nodes.push({ kind: 'range', expr, body: block(['end']).nodes });
      } else if (word === 'define') {
        defines.set(JSON.parse(expr) as string, block(['end']).nodes);
      } else if (['template', 'block', 'else', 'end'].includes(word!) || t.action.includes(':=')) {
        throw new Error(`unsupported: {{${t.action}}}`);
      } else {
        nodes.push({ kind: 'action', expr: t.action });
      }
    }
    if (stopAt.length) throw new Error(`missing {{end}} (wanted ${stopAt.join('/')})`);
    return { nodes, stop: '' };
  };
  return block([]).nodes;
}

/** Tokens of one pipeline: strings, numbers, words, fields, `|`, parentheses. */
function tokenize(expr: string): string[] {
  const re = /\s*("(?:[^"\\]|\\.)*"|\(|\)|\||[^\s()|]+)/gy;
  const out: string[] = [];
  let m: RegExpExecArray | null;
  while ((m = re.exec(expr)) !== null) out.push(m[1]!);
  if (out.join('').replace(/\s/g, '') !== expr.replace(/\s/g, '')) throw new Error(`cannot read: ${expr}`);
  return out;
}

export class HelmLite {
  private readonly defines = new Map<string, Node[]>();

  constructor(private readonly functions: Record<string, (...args: Value[]) => Value> = {}) {}

  private field(base: Value, chain: string[], expr: string): Value {
    let v = base;
    for (const key of chain) {
      if (v === undefined || v === null) throw new Error(`nil pointer evaluating ${expr}`);
      v = isDict(v) ? v[key] : undefined;
    }
    return v;
  }

  private operand(tok: string, scope: Scope): Value {
    if (tok.startsWith('"')) return JSON.parse(tok) as string;
    if (/^-?\d+$/.test(tok)) return Number(tok);
    if (tok === 'true' || tok === 'false') return tok === 'true';
    if (tok === 'nil') return null;
    if (tok === '.') return scope.dot;
    if (tok === '$') return scope.root;
    if (tok.startsWith('$.')) return this.field(scope.root, tok.slice(2).split('.'), tok);
    if (tok.startsWith('.')) return this.field(scope.dot, tok.slice(1).split('.'), tok);
    throw new Error(`unknown operand ${tok}`);
  }

  /** Evaluates `cmd | cmd ...`, where a piped value is the last argument of the next command. */
  private pipeline(tokens: string[], scope: Scope): Value {
    const commands: string[][][] = [[]];
    let depth = 0;
    let group: string[] = [];
    for (const tok of tokens) {
      if (tok === '(') depth++;
      if (tok === ')') depth--;
      if (depth === 0 && tok === '|') {
        commands.push([]);
        continue;
      }
      group.push(tok);
      if (depth === 0) {
        commands[commands.length - 1]!.push(group);
        group = [];
      }
    }
    const evalGroup = (g: string[]): Value => (g[0] === '(' ? this.pipeline(g.slice(1, -1), scope) : this.operand(g[0]!, scope));
    let piped: Value[] = [];
    for (const command of commands) {
      const head = command[0]!;
      const fn = head.length === 1 && Object.hasOwn(this.functions, head[0]!) ? this.functions[head[0]!] : undefined;
      let value: Value;
      if (fn) value = fn(...command.slice(1).map(evalGroup), ...piped);
      else if (command.length === 1 && piped.length === 0) value = evalGroup(head);
      else throw new Error(`unknown function ${head.join(' ')}`);
      piped = [value];
    }
    return piped[0];
  }

  private eval(expr: string, scope: Scope): Value {
    return this.pipeline(tokenize(expr), scope);
  }

  private run(nodes: Node[], scope: Scope): string {
    let out = '';
    for (const n of nodes) {
      if (n.kind === 'text') out += n.text;
      else if (n.kind === 'action') {
        const v = this.eval(n.expr, scope);
        out += v === undefined || v === null ? '' : String(v);
      } else if (n.kind === 'if') out += this.run(truthy(this.eval(n.expr, scope)) ? n.then : n.else, scope);
      else if (n.kind === 'with') {
        const v = this.eval(n.expr, scope);
        out += truthy(v) ? this.run(n.then, { ...scope, dot: v }) : this.run(n.else, scope);
      } else if (n.kind === 'range') {
        const v = this.eval(n.expr, scope);
        const items = Array.isArray(v) ? v : isDict(v) ? Object.keys(v).sort().map((k) => v[k]) : [];
        for (const item of items) out += this.run(n.body, { ...scope, dot: item });
      }
    }
    return out;
  }

  include(name: string, dot: Value, root: Value): string {
    const body = this.defines.get(name);
    if (!body) throw new Error(`no template named ${name}`);
    return this.run(body, { dot, root });
  }

  /** Renders every template of a chart directory with these values (over values.yaml): file name → text. */
  static renderChart(chartDir: string, overrides: Dict, release = { Name: 'rel', Namespace: 'default' }): Map<string, string> {
    let engine: HelmLite;
    const fns: Record<string, (...args: Value[]) => Value> = {
      include: (name, dot) => engine.include(name as string, dot, root),
      default: (fallback, v) => (truthy(v) ? v : fallback),
      required: (message, v) => {
        if (!truthy(v)) throw new Error(`execution error: ${String(message)}`);
        return v;
      },
      quote: (v) => JSON.stringify(v === undefined || v === null ? '' : String(v)),
      printf: (format, ...args) => {
        let k = 0;
        return (format as string).replace(/%[svd]/g, () => String(args[k++]));
      },
      trunc: (n, s) => String(s).slice(0, n as number),
      trimSuffix: (suffix, s) => (String(s).endsWith(suffix as string) ? String(s).slice(0, -(suffix as string).length) : s),
      toYaml: (v) => YAML.stringify(v, { sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, ''),
      indent: (n, s) => String(s).split('\n').map((l) => ' '.repeat(n as number) + l).join('\n'),
      nindent: (n, s) => '\n' + String(s).split('\n').map((l) => ' '.repeat(n as number) + l).join('\n'),
      eq: (a, b) => a === b,
      ne: (a, b) => a !== b,
      not: (v) => !truthy(v),
      and: (...vs) => vs.reduce((acc, v) => (truthy(acc) ? v : acc)),
      or: (...vs) => vs.reduce((acc, v) => (truthy(acc) ? acc : v)),
    };
    engine = new HelmLite(fns);
    const chart = YAML.parse(readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8')) as Dict;
    const values = mergeValues(YAML.parse(readFileSync(path.join(chartDir, 'values.yaml'), 'utf8')) as Dict, overrides);
    const root: Dict = {
      Values: values,
      Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
      Release: { ...release, Service: 'Helm', IsInstall: true, IsUpgrade: false },
    };
    const dir = path.join(chartDir, 'templates');
    const files = readdirSync(dir).sort();
    const parsed = new Map<string, Node[]>();
    for (const f of files) {
      if (!/\.(ya?ml|tpl)$/.test(f)) continue;
      const nodes = parse(readFileSync(path.join(dir, f), 'utf8'), engine.defines);
      if (!f.startsWith('_')) parsed.set(f, nodes);
    }
    const out = new Map<string, string>();
    for (const [f, nodes] of parsed) out.set(f, engine.run(nodes, { dot: root, root }));
    return out;
  }
}

/** Helm's values merge: maps merge key by key, anything else (lists too) replaces; null deletes. */
export function mergeValues(base: Dict, over: Dict): Dict {
  const out: Dict = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else if (isDict(v) && isDict(out[k])) out[k] = mergeValues(out[k], v);
    else out[k] = v;
  }
  return out;
}
