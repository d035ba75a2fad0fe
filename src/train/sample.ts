// Sampling text from a model, in float32 or under float16/bfloat16 autocast
// (model.generate, with its key/value cache).

import type { GPT, GenerateOptions } from '../nn/gpt.js';
import { tensor } from '../tensor/creation.js';
import type { Tokenizer } from '../data/tokenizer.js';

export type SamplePrecision = 'fp32' | 'fp16' | 'bf16';
export const SAMPLE_PRECISIONS: readonly SamplePrecision[] = ['fp32', 'fp16', 'bf16'];

const AUTOCAST = { fp32: undefined, fp16: 'float16', bf16: 'bfloat16' } as const;

export interface SampleOptions extends Omit<GenerateOptions, 'autocast'> {
  precision?: SamplePrecision;
}

/** Up to maxNewTokens tokens sampled after the prompt, decoded (the continuation only). */
export async function sampleText(model: GPT, tokenizer: Tokenizer, prompt: string, opts: SampleOptions): Promise<string> {
  const promptIds = tokenizer.encode(prompt);
  if (promptIds.length === 0) throw new Error('the prompt is empty: give at least one character');
  const ids = tensor(promptIds, { shape: [1, promptIds.length], dtype: 'int32', backend: model.backend });
  const { precision = 'fp32', ...gen } = opts;
  const out = await model.generate(ids, { ...gen, autocast: AUTOCAST[precision] });
  try {
    const all = await out.toArray();
    return tokenizer.decode(Array.from(all.subarray(promptIds.length)));
  } finally {
    ids.dispose();
    out.dispose();
  }
}
