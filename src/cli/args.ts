// A small command-line parser: `--name value` and `--name=value`, typed values
// (int, float, string, enum, flag, or a custom parse), defaults shown in the
// help, and errors that name the option and come with the command's usage.

import { MixprecError, type ErrorCode } from '../errors.js';
import type { OutputStream } from './progress.js';

/** A usage error: the message names the option (or command) at fault; the CLI prints it with the usage and exits with 2. */
export class UsageError extends MixprecError {
  override readonly code: ErrorCode = 'CLI_USAGE';
  /** The usage text to show with the message. */
  constructor(message: string, readonly usage: string) {
    super(message);
  }
}

export type OptionType = 'int' | 'float' | 'string' | 'enum' | 'flag';

export interface OptionSpec {
  /** The long name without dashes: `batch-size`. */
  name: string;
  type: OptionType;
  help: string;
  /** For enums: the accepted values. */
  values?: readonly string[];
  /** The value when the option is absent (undefined: absent stays undefined). */
  default?: unknown;
  /** How the default reads in the help, when it is not just the value. */
  defaultText?: string;
  /** The placeholder in the help (`N`, `PATH`, ...). */
  metavar?: string;
  /** The smallest accepted value (int, float). */
  min?: number;
  /** Converts and checks a string value; throws an Error whose message says what is wrong. */
  parse?: (raw: string) => unknown;
  /** Must be given. */
  required?: boolean;
  /** A one-letter alias (`-h`). */
  short?: string;
  /** May be given several times: the value is the array of the values given (absent: the default, or []). */
  repeatable?: boolean;
}

export interface CommandSpec {
  /** `train`, or the program name for the top level. */
  name: string;
  /** One line: what the command does. */
  summary: string;
  /** The usage line after the program name, e.g. `train [options]`. */
  usage: string;
  options: readonly OptionSpec[];
  /** Free text after the options list (examples, notes). */
  epilog?: string;
}

export interface ParsedArgs {
  /** By option name (`batch-size`); absent options hold their default. */
  values: Record<string, unknown>;
  /** The options given on the command line. */
  given: Set<string>;
  help: boolean;
}

export const PROGRAM = 'mixprec';

/** What a value of the option is, in words, for error messages. */
function kindOf(o: OptionSpec): string {
  switch (o.type) {
    case 'int': return 'an integer';
    case 'float': return 'a number';
    case 'enum': return `one of ${o.values!.join(', ')}`;
    default: return o.metavar ?? 'a value';
  }
}

/** Splits text into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

function metavarOf(o: OptionSpec): string {
  if (o.metavar) return o.metavar;
  switch (o.type) {
    case 'int': return 'N';
    case 'float': return 'X';
    case 'enum': return o.values!.join('|');
    case 'flag': return '';
    default: return 'VALUE';
  }
}

/** The short usage shown with errors: the usage line and where to find the full help. */
export function shortUsage(spec: CommandSpec): string {
  const prefix = spec.name === PROGRAM ? PROGRAM : `${PROGRAM} ${spec.name}`;
  return `usage: ${PROGRAM} ${spec.usage}\nRun '${prefix} --help' for the options.`;
}

/** The full help: summary, usage, every option with its default, epilog. */
export function formatHelp(spec: CommandSpec): string {
  const lines = [`${spec.summary}`, '', `usage: ${PROGRAM} ${spec.usage}`, ''];
  if (spec.options.length) {
    lines.push('options:');
    const heads = spec.options.map((o) => {
      const mv = metavarOf(o);
      return `  ${o.short ? `-${o.short}, ` : ''}--${o.name}${mv ? ` ${mv}` : ''}`;
    });
    const width = Math.min(34, Math.max(...heads.map((h) => h.length)) + 2);
    spec.options.forEach((o, i) => {
      let text = o.help;
      const def = o.defaultText ?? (o.default === undefined || o.type === 'flag' ? undefined : String(o.default));
      if (def !== undefined) text += ` (default: ${def})`;
      if (o.required) text += ' (required)';
      if (o.repeatable) text += ' (repeatable)';
      const head = heads[i]!;
      const body = wrap(text, Math.max(40, 100 - width));
      if (head.length + 1 >= width) lines.push(head);
      else lines.push(head.padEnd(width) + body.shift()!);
      for (const rest of body) lines.push(' '.repeat(width) + rest);
    });
  }
  if (spec.epilog) lines.push('', spec.epilog);
  return `${lines.join('\n')}\n`;
}

function convert(o: OptionSpec, raw: string, usage: string): unknown {
  const bad = (what: string): never => { throw new UsageError(`option --${o.name}: ${what}`, usage); };
  if (o.parse) {
    try {
      return o.parse(raw);
    } catch (err) {
      return bad((err as Error).message);
    }
  }
  switch (o.type) {
    case 'int': {
      if (!/^[+-]?\d+$/.test(raw.trim())) bad(`expected an integer, got '${raw}'`);
      const v = Number(raw);
      if (!Number.isSafeInteger(v)) bad(`'${raw}' is out of range`);
      if (o.min !== undefined && v < o.min) bad(`must be at least ${o.min}, got ${v}`);
      return v;
    }
    case 'float': {
      const v = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(v)) bad(`expected a number, got '${raw}'`);
      if (o.min !== undefined && v < o.min) bad(`must be at least ${o.min}, got ${v}`);
      return v;
    }
    case 'enum':
      if (!o.values!.includes(raw)) bad(`'${raw}' is not one of ${o.values!.join(', ')}`);
      return raw;
    default:
      return raw;
  }
}

/** parseArgs for a command: prints the command's help and returns null when --help/-h was given. */
export function parseCommandArgs(spec: CommandSpec, argv: readonly string[], out: OutputStream): ParsedArgs | null {
  const args = parseArgs(spec, argv);
  if (!args.help) return args;
  out.write(formatHelp(spec));
  return null;
}

/**
 * Parses `argv` (the arguments after the command name) against `spec`. Throws
 * UsageError for an unknown option, a missing value, a value of the wrong type
 * or a stray argument. `--help`/`-h` sets `help` and skips the checks.
 */
export function parseArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const usage = shortUsage(spec);
  if (argv.includes('--help') || argv.includes('-h')) return { values: {}, given: new Set(), help: true };
  const byName = new Map(spec.options.map((o) => [o.name, o]));
  const byShort = new Map(spec.options.filter((o) => o.short).map((o) => [o.short!, o]));
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    let opt: OptionSpec | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      opt = byName.get(name);
      if (!opt) {
        const near = spec.options.map((o) => o.name).filter((n) => n.startsWith(name.slice(0, 3)) || name.startsWith(n));
        throw new UsageError(`unknown option --${name}${near.length ? ` (did you mean ${near.map((n) => `--${n}`).join(', ')}?)` : ''}`, usage);
      }
    } else if (/^-[A-Za-z]$/.test(arg)) {
      opt = byShort.get(arg.slice(1));
      if (!opt) throw new UsageError(`unknown option ${arg}`, usage);
    } else {
      throw new UsageError(`unexpected argument '${arg}' (options start with --)`, usage);
    }
    if (given.has(opt.name) && !opt.repeatable) throw new UsageError(`option --${opt.name} is given more than once`, usage);
    given.add(opt.name);
    if (opt.type === 'flag') {
      if (inline !== undefined) throw new UsageError(`option --${opt.name} is a flag and takes no value (got '${inline}')`, usage);
      values[opt.name] = true;
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      const next = argv[i + 1];
      // A following option is not a value ("--lr --seed 3"); a negative number is ("--x -1").
      if (next === undefined || (next.startsWith('--') && next.length > 2) || /^-[A-Za-z]$/.test(next)) {
        throw new UsageError(`option --${opt.name} is missing its value (${kindOf(opt)})`, usage);
      }
      raw = next;
      i++;
    }
    if (raw === '' && opt.type !== 'string') throw new UsageError(`option --${opt.name} is missing its value (${kindOf(opt)})`, usage);
    const value = convert(opt, raw, usage);
    values[opt.name] = opt.repeatable ? [...((values[opt.name] as unknown[] | undefined) ?? []), value] : value;
  }
  for (const o of spec.options) {
    if (!given.has(o.name)) {
      if (o.required) throw new UsageError(`option --${o.name} is required`, usage);
      values[o.name] = o.type === 'flag' ? false : o.default ?? (o.repeatable ? [] : undefined);
    }
  }
  return { values, given, help: false };
}
