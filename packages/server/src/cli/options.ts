// A small, typed command-line option table: each option says its flag, how its value parses, its
// default and its help line. One table drives argv parsing, FLASHSERVE_<NAME> environment variables,
// the keys of a --config YAML file and the usage text, so the four can never disagree.
//
// Precedence, lowest first: defaults < --config file < environment < command line.

import { configInvalidValue, configUnknownFlag } from '../errors.js';

export type OptionKind =
  | { readonly type: 'string' }
  | { readonly type: 'int'; readonly min?: number; readonly max?: number }
  | { readonly type: 'number'; readonly min?: number; readonly max?: number; readonly exclusiveMin?: boolean }
  | { readonly type: 'bool' }
  /** A size in bytes: an integer, or a number with a unit (KiB, MiB, GiB, KB, MB, GB, K, M, G). */
  | { readonly type: 'bytes' }
  | { readonly type: 'enum'; readonly choices: readonly string[] };

export interface OptionSpec<K extends string = string> {
  /** Key in the parsed object (camelCase). */
  readonly key: K;
  /** Long flag without dashes, kebab-case (vLLM's spelling). */
  readonly flag: string;
  readonly kind: OptionKind;
  /** Shown in the usage; also the value when nothing sets the option (undefined = unset). */
  readonly default?: string | number | boolean;
  readonly help: string;
  /** Placeholder for the value in the usage. */
  readonly metavar?: string;
}

export type OptionValue = string | number | boolean;
export type ParsedOptions = Record<string, OptionValue | undefined>;

/** FLASHSERVE_MAX_NUM_SEQS for --max-num-seqs. */
export function envName(flag: string): string {
  return `FLASHSERVE_${flag.replaceAll('-', '_').toUpperCase()}`;
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

function describe(kind: OptionKind): string {
  switch (kind.type) {
    case 'string':
      return 'a string';
    case 'bool':
      return 'true or false';
    case 'bytes':
      return 'a size such as 512MiB or 2GiB';
    case 'enum':
      return `one of ${kind.choices.join(', ')}`;
    case 'int':
    case 'number': {
      const what = kind.type === 'int' ? 'an integer' : 'a number';
      const lo =
        kind.min === undefined
          ? ''
          : ` ${'exclusiveMin' in kind && kind.exclusiveMin ? '>' : '>='} ${kind.min}`;
      const hi = kind.max === undefined ? '' : `${lo ? ' and' : ''} <= ${kind.max}`;
      return `${what}${lo}${hi}`;
    }
  }
}

/** Parses one raw value for `spec`; `source` names where it came from for the error message. */
export function parseValue(spec: OptionSpec, raw: string, source: string): OptionValue {
  const fail = () => configInvalidValue(source, describe(spec.kind), raw);
  const kind = spec.kind;
  switch (kind.type) {
    case 'string':
      if (raw === '') throw fail();
      return raw;
    case 'bool': {
      const v = raw.toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw fail();
    }
    case 'enum':
      if (!kind.choices.includes(raw)) throw fail();
      return raw;
    case 'bytes': {
      const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(raw);
      const unit = m ? BYTE_UNITS[(m[2] ?? '').toLowerCase()] : undefined;
      if (!m || unit === undefined) throw fail();
      const bytes = Math.floor(Number(m[1]) * unit);
      if (!Number.isSafeInteger(bytes) || bytes <= 0) throw fail();
      return bytes;
    }
    case 'int':
    case 'number': {
      const trimmed = raw.trim();
      const n = trimmed === '' ? Number.NaN : Number(trimmed);
      if (!Number.isFinite(n)) throw fail();
      if (kind.type === 'int' && !Number.isSafeInteger(n)) throw fail();
      if (kind.min !== undefined) {
        const exclusive = kind.type === 'number' && kind.exclusiveMin === true;
        if (exclusive ? n <= kind.min : n < kind.min) throw fail();
      }
      if (kind.max !== undefined && n > kind.max) throw fail();
      return n;
    }
  }
}

/** Parses `argv` (flags only, after the subcommand) against `specs`. Accepts `--flag value`,
 * `--flag=value`, bare boolean flags and `--no-<flag>` for booleans. */
export function parseArgv(specs: readonly OptionSpec[], argv: readonly string[]): ParsedOptions {
  const byFlag = new Map(specs.map((s) => [s.flag, s]));
  const out: ParsedOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--') || arg === '--') throw configUnknownFlag(arg === '' ? '""' : arg);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    let spec = byFlag.get(name);
    let negated = false;
    if (!spec && name.startsWith('no-')) {
      const positive = byFlag.get(name.slice(3));
      if (positive?.kind.type === 'bool') {
        spec = positive;
        negated = true;
      }
    }
    if (!spec) throw configUnknownFlag(`--${name}`);
    let raw: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (spec.kind.type === 'bool') {
      if (negated && raw !== undefined) throw configInvalidValue(`--${name}`, 'no value', raw);
      out[spec.key] = negated ? false : raw === undefined ? true : parseValue(spec, raw, `--${name}`);
      continue;
    }
    if (raw === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw configInvalidValue(`--${name}`, 'a value', '');
      raw = next;
      i++;
    }
    out[spec.key] = parseValue(spec, raw, `--${name}`);
  }
  return out;
}

/** Reads FLASHSERVE_<FLAG> variables for every spec. */
export function parseEnv(specs: readonly OptionSpec[], env: NodeJS.ProcessEnv): ParsedOptions {
  const out: ParsedOptions = {};
  for (const spec of specs) {
    const name = envName(spec.flag);
    const raw = env[name];
    if (raw !== undefined && raw !== '') out[spec.key] = parseValue(spec, raw, name);
  }
  return out;
}

/** Reads the keys of a parsed YAML mapping; keys may be kebab-case or snake_case flag names. */
export function parseMapping(
  specs: readonly OptionSpec[],
  mapping: Record<string, unknown>,
  source: string,
): ParsedOptions {
  const byKey = new Map<string, OptionSpec>();
  for (const s of specs) {
    byKey.set(s.flag, s);
    byKey.set(s.flag.replaceAll('-', '_'), s);
  }
  const out: ParsedOptions = {};
  for (const [key, value] of Object.entries(mapping)) {
    const spec = byKey.get(key);
    if (!spec) throw configUnknownFlag(`"${key}" in ${source}`);
    if (value === null || value === undefined) continue;
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw configInvalidValue(`${source}: ${key}`, describe(spec.kind), JSON.stringify(value));
    }
    out[spec.key] = parseValue(spec, String(value), `${source}: ${key}`);
  }
  return out;
}

/** The usage text: one line per option with its environment variable and default. */
export function formatUsage(command: string, specs: readonly OptionSpec[]): string {
  const rows = specs.map((s) => {
    const value =
      s.kind.type === 'bool'
        ? ''
        : ` <${s.metavar ?? (s.kind.type === 'enum' ? s.kind.choices.join('|') : s.kind.type)}>`;
    return [`  --${s.flag}${value}`, s.help + (s.default === undefined ? '' : ` (default: ${s.default})`)];
  });
  const width = Math.min(44, Math.max(...rows.map((r) => (r[0] ?? '').length)) + 2);
  const lines = rows.map(([left = '', right = '']) =>
    left.length >= width ? `${left}\n${' '.repeat(width)}${right}` : `${left.padEnd(width)}${right}`,
  );
  return [
    `usage: ${command} [options]`,
    '',
    'options (each also as FLASHSERVE_<OPTION> in the environment, e.g. --max-num-seqs is FLASHSERVE_MAX_NUM_SEQS):',
    ...lines,
  ].join('\n');
}
