// `mixprec compare`: trains the same model on the same data and seed under
// several precision set-ups and writes report.html (and results.json) into --out.

import { relative } from 'node:path';
import { DEFAULT_TRAIN_CONFIG, type TrainConfig } from '../train/config.js';
import { DEFAULT_SETUPS, compare, slug } from '../report/compare.js';
import { UsageError, parseCommandArgs, shortUsage, type CommandSpec } from './args.js';
import { EXIT_OK } from './errors.js';
import { HELP_OPTION } from './common.js';
import { CONFIG_OPTIONS, NUMERICS_OPTIONS, camel, numericsOptions } from './train.js';
import type { OutputStream } from './progress.js';

const SETUP_NAMES = DEFAULT_SETUPS.map((s) => slug(s.name));

export const COMPARE_SPEC: CommandSpec = {
  name: 'compare',
  summary: 'Train one model under several precision set-ups and write a report comparing them.',
  usage: 'compare [options]',
  options: [
    ...CONFIG_OPTIONS.filter((o) => o.name !== 'precision' && o.name !== 'loss-scale' && o.name !== 'init-from'),
    { name: 'out', type: 'string', metavar: 'DIR', default: 'runs/compare', help: 'where the runs, results.json and report.html go' },
    { name: 'setups', type: 'string', metavar: 'LIST', defaultText: 'all', help: `comma-separated, from: ${SETUP_NAMES.join(', ')}` },
    ...NUMERICS_OPTIONS,
    HELP_OPTION,
  ],
  epilog: [
    'Set-ups: float32; float16 compute without loss scaling, with the static scale the float32',
    "run's gradients recommend, and with dynamic scaling; float16 weights without float32 master",
    'weights; bfloat16. Every other option is as for train and applies to all of them.',
    '',
    'examples:',
    '  mixprec compare --max-steps 200 --out runs/compare',
    '  mixprec compare --setups fp32,fp16-dynamic,bf16 --backend cpu',
  ].join('\n'),
};

export async function compareCommand(argv: readonly string[], out: OutputStream, err: OutputStream): Promise<number> {
  const args = parseCommandArgs(COMPARE_SPEC, argv, out);
  if (!args) return EXIT_OK;
  const config: Partial<TrainConfig> = {};
  for (const o of CONFIG_OPTIONS) {
    if (args.given.has(o.name)) (config as Record<string, unknown>)[camel(o.name)] = args.values[o.name];
  }
  let setups = DEFAULT_SETUPS;
  if (args.given.has('setups')) {
    const wanted = String(args.values.setups).split(',').map((s) => s.trim()).filter(Boolean);
    for (const w of wanted) {
      if (!SETUP_NAMES.includes(w)) throw new UsageError(`option --setups: unknown set-up '${w}' (set-ups: ${SETUP_NAMES.join(', ')})`, shortUsage(COMPARE_SPEC));
    }
    setups = DEFAULT_SETUPS.filter((s) => wanted.includes(slug(s.name)));
  }
  const dir = String(args.values.out);
  const { results, reportFile } = await compare({
    config, out: dir, setups,
    ...numericsOptions(args.values, Math.max(1, Math.floor((config.maxSteps ?? DEFAULT_TRAIN_CONFIG.maxSteps) / 20))),
    log: (m) => err.write(`${m}\n`),
    command: `mixprec compare ${argv.join(' ')}`.trim(),
  });
  for (const r of results) {
    out.write(`${r.setup.name}: ${r.status}, ${r.steps} steps, ${r.skipped.length} skipped, final val loss ${r.finalValLoss?.toFixed(4) ?? '-'}, ${Math.round(r.tokensPerSec)} tok/s\n`);
  }
  out.write(`report: ${relative(process.cwd(), reportFile) || reportFile}\n`);
  return EXIT_OK;
}
