import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError, formatHelp, parseArgs, type CommandSpec } from '../../src/cli/args.js';

const spec: CommandSpec = {
  name: 'demo',
  summary: 'A demo command.',
  usage: 'demo [options]',
  options: [
    { name: 'steps', type: 'int', min: 1, default: 10, help: 'how many' },
    { name: 'lr', type: 'float', default: 0.001, help: 'rate' },
    { name: 'name', type: 'string', metavar: 'TEXT', help: 'a name' },
    { name: 'mode', type: 'enum', values: ['a', 'b'], default: 'a', help: 'the mode' },
    { name: 'fast', type: 'flag', help: 'go fast' },
    { name: 'budget', type: 'string', parse: (s) => { if (!/^\d+m$/.test(s)) throw new Error(`'${s}' is not minutes`); return Number(s.slice(0, -1)) * 60; }, help: 'minutes' },
    { name: 'help', short: 'h', type: 'flag', help: 'help' },
  ],
};

function usageError(argv: string[], message: RegExp): void {
  assert.throws(() => parseArgs(spec, argv), (e: Error) => {
    assert.ok(e instanceof UsageError, `${e.name}: ${e.message}`);
    assert.match(e.message, message);
    assert.match(e.usage, /^usage: mixprec demo \[options\]\nRun 'mixprec demo --help' for the options\.$/);
    return true;
  });
}

test('values in both forms, with types and defaults', () => {
  const r = parseArgs(spec, ['--steps', '5', '--lr=3e-4', '--name', 'x y', '--mode=b', '--fast', '--budget', '9m']);
  assert.deepEqual(r.values, { steps: 5, lr: 3e-4, name: 'x y', mode: 'b', fast: true, budget: 540, help: false });
  assert.deepEqual([...r.given].sort(), ['budget', 'fast', 'lr', 'mode', 'name', 'steps']);
  const d = parseArgs(spec, []);
  assert.deepEqual(d.values, { steps: 10, lr: 0.001, name: undefined, mode: 'a', fast: false, budget: undefined, help: false });
  assert.equal(d.given.size, 0);
});

test('a negative number is a value; an empty string is a value of a string option', () => {
  assert.equal(parseArgs(spec, ['--lr', '-0.5']).values.lr, -0.5);
  assert.equal(parseArgs(spec, ['--name=']).values.name, '');
});

test('--help and -h win over everything else', () => {
  assert.equal(parseArgs(spec, ['--bogus', '--help']).help, true);
  assert.equal(parseArgs(spec, ['-h']).help, true);
});

test('each bad argument is a UsageError naming the option, with the usage', () => {
  usageError(['--bogus', '1'], /^unknown option --bogus$/);
  usageError(['--step', '1'], /^unknown option --step \(did you mean --steps\?\)$/);
  usageError(['-x'], /^unknown option -x$/);
  usageError(['--steps'], /^option --steps is missing its value \(an integer\)$/);
  usageError(['--lr', '--steps', '3'], /^option --lr is missing its value \(a number\)$/);
  usageError(['--steps='], /^option --steps is missing its value \(an integer\)$/);
  usageError(['--steps', '2.5'], /^option --steps: expected an integer, got '2\.5'$/);
  usageError(['--steps', 'ten'], /^option --steps: expected an integer, got 'ten'$/);
  usageError(['--steps', '0'], /^option --steps: must be at least 1, got 0$/);
  usageError(['--lr', 'fast'], /^option --lr: expected a number, got 'fast'$/);
  usageError(['--mode', 'c'], /^option --mode: 'c' is not one of a, b$/);
  usageError(['--fast=yes'], /^option --fast is a flag and takes no value \(got 'yes'\)$/);
  usageError(['--budget', '9 minutes'], /^option --budget: '9 minutes' is not minutes$/);
  usageError(['--steps', '1', '--steps', '2'], /^option --steps is given more than once$/);
  usageError(['stray'], /^unexpected argument 'stray'/);
});

test('a repeatable option collects its values in order; absent, it is empty', () => {
  const tags: CommandSpec = { ...spec, options: [...spec.options, { name: 'tag', type: 'string', repeatable: true, parse: (s) => s.toUpperCase(), help: 'a tag' }] };
  assert.deepEqual(parseArgs(tags, ['--tag', 'b', '--steps', '2', '--tag=a']).values.tag, ['B', 'A']);
  assert.deepEqual(parseArgs(tags, []).values.tag, []);
  assert.match(formatHelp(tags), /--tag VALUE +a tag \(repeatable\)/);
});

test('the help lists every option with its default', () => {
  const help = formatHelp(spec);
  assert.match(help, /^A demo command\.\n\nusage: mixprec demo \[options\]\n/);
  assert.match(help, /--steps N +how many \(default: 10\)/);
  assert.match(help, /--mode a\|b +the mode \(default: a\)/);
  assert.match(help, /-h, --help/);
  assert.doesNotMatch(help, /--fast.*default/);
});
