// Options and steps the commands share.

import { WEIGHT_FORMATS } from '../nn/quantize.js';
import { TOKENIZER_NAMES, loadTokenizer, type Tokenizer, type TokenizerName } from '../data/tokenizer.js';
import { BACKEND_CHOICES, type BackendChoice } from '../train/config.js';
import { describeSelection, selectBackend, type SelectedBackend } from '../train/select-backend.js';
import type { OpenedModel } from '../train/model-dir.js';
import { UsageError, shortUsage, type CommandSpec, type OptionSpec } from './args.js';
import type { OutputStream } from './progress.js';

export const HELP_OPTION: OptionSpec = { name: 'help', short: 'h', type: 'flag', help: 'show this help' };

export function backendOption(defaultChoice: BackendChoice = 'auto'): OptionSpec {
  return { name: 'backend', type: 'enum', values: BACKEND_CHOICES, default: defaultChoice, help: 'auto tries WebGPU and falls back to the CPU backend' };
}

/** --weights and --group-size: the weight format a model is run in. */
export const WEIGHTS_OPTIONS: readonly OptionSpec[] = [
  { name: 'weights', type: 'enum', values: WEIGHT_FORMATS, defaultText: "the directory's format (fp32 for float weights)", help: 'weight format: float32, 16-bit floats cast once, or int8/int4 weight-only quantization (embedding in fp16)' },
  { name: 'group-size', type: 'int', min: 1, defaultText: "int8: one scale per output channel; int4: 64, or 32 where a layer's inputs are not a multiple of 64", help: 'inputs per quantization scale (int4: 32 or 64)' },
];

/** --checkpoint and --tokenizer of the commands that open a trained model. */
export const MODEL_DIR_OPTIONS: readonly OptionSpec[] = [
  { name: 'checkpoint', type: 'string', metavar: 'DIR', required: true, help: 'a run directory, its checkpoint directory, or a Hugging Face GPT-2 directory' },
  { name: 'tokenizer', type: 'enum', values: TOKENIZER_NAMES, defaultText: "the run's, or implied by the vocabulary", help: 'byte or gpt2' },
];

/** Selects the backend and says on `err` which one (and, on a fallback, why WebGPU was not used). */
export async function useBackend(choice: BackendChoice, err: OutputStream): Promise<SelectedBackend> {
  const selected = await selectBackend(choice);
  err.write(`${describeSelection(selected)}\n`);
  return selected;
}

/** The tokenizer of an opened model: --tokenizer, else the model's own; its vocabulary must be the model's. */
export async function modelTokenizer(requested: TokenizerName | undefined, opened: OpenedModel, spec: CommandSpec): Promise<Tokenizer> {
  const vocab = opened.model.config.vocabSize;
  const name = requested ?? opened.tokenizer;
  if (!name) throw new UsageError(`option --tokenizer is needed: the model's vocabulary of ${vocab} tokens matches no known tokenizer`, shortUsage(spec));
  const tokenizer = await loadTokenizer(name);
  if (tokenizer.vocabSize !== vocab) {
    throw new UsageError(`option --tokenizer: the ${name} tokenizer has ${tokenizer.vocabSize} tokens, the model ${vocab}`, shortUsage(spec));
  }
  return tokenizer;
}

/** "DIR (step N)": where an opened model's weights came from. */
export function describeOpened(opened: OpenedModel): string {
  return `${opened.dir}${opened.step !== null ? ` (step ${opened.step})` : ''}`;
}
