// Sampling text from a model: in its weight format, in float32 or under
// float16/bfloat16 autocast (model.generate, with its key/value cache), several
// samples of one prompt at once, streamed as tokens arrive, each ended by a stop
// string or the tokenizer's end-of-text token.

import { GenerationError, type GPT, type GenerateOptions } from '../nn/gpt.js';
import { tensor } from '../tensor/creation.js';
import type { Tokenizer } from '../data/tokenizer.js';

export type SamplePrecision = 'fp32' | 'fp16' | 'bf16';
export const SAMPLE_PRECISIONS: readonly SamplePrecision[] = ['fp32', 'fp16', 'bf16'];

const AUTOCAST = { fp32: undefined, fp16: 'float16', bf16: 'bfloat16' } as const;

/** GPT-2's `<|endoftext|>`: generation of a row ends when it is sampled. */
const END_OF_TEXT: Partial<Record<Tokenizer['name'], number>> = { gpt2: 50256 };

export interface SampleOptions extends Omit<GenerateOptions, 'autocast' | 'onStep' | 'eosTokenId'> {
  precision?: SamplePrecision;
  /** Samples of the prompt drawn at once (default 1). */
  numSamples?: number;
  /** A sample ends where one of these first appears (the stop string is not included). */
  stop?: readonly string[];
  /** Receives each sample's new text as it is decoded (text that could still begin a stop string is held back). */
  onText?: (sample: number, text: string) => void;
}

/** Up to maxNewTokens tokens sampled after the prompt, decoded (the continuation only). */
export async function sampleText(model: GPT, tokenizer: Tokenizer, prompt: string, opts: SampleOptions): Promise<string> {
  return (await sampleTexts(model, tokenizer, prompt, { ...opts, numSamples: 1 }))[0]!;
}

/** numSamples continuations of the prompt, each cut at its first stop string. */
export async function sampleTexts(model: GPT, tokenizer: Tokenizer, prompt: string, opts: SampleOptions): Promise<string[]> {
  const promptIds = tokenizer.encode(prompt);
  if (promptIds.length === 0) throw new Error('the prompt is empty: give at least one character');
  const { precision = 'fp32', numSamples = 1, stop = [], onText, ...gen } = opts;
  if (!Number.isSafeInteger(numSamples) || numSamples < 1) throw new GenerationError(`sampleTexts: numSamples must be a positive integer, got ${numSamples}`);
  const empty = stop.indexOf('');
  if (empty >= 0) throw new GenerationError(`sampleTexts: stop string ${empty} is empty (it would end every sample before its first token)`);
  const rows = Array.from({ length: numSamples }, () => promptIds);
  const ids = tensor(Int32Array.from(rows.flatMap((r) => [...r])), { shape: [numSamples, promptIds.length], dtype: 'int32', backend: model.backend });
  const eos = END_OF_TEXT[tokenizer.name];
  const tokens: number[][] = rows.map(() => []);
  const texts = rows.map(() => '');
  const shown = rows.map(() => 0);
  const done = rows.map(() => false);
  const holdBack = Math.max(0, ...stop.map((s) => s.length - 1));
  const update = (b: number, final: boolean) => {
    let text = tokenizer.decode(tokens[b]!);
    const cut = Math.min(...stop.map((s) => text.indexOf(s)).filter((i) => i >= 0));
    if (Number.isFinite(cut)) {
      text = text.slice(0, cut);
      done[b] = true;
    }
    texts[b] = text;
    // Held back: what a stop string could still claim, and a character still being decoded.
    let upTo = done[b] || final ? text.length : Math.max(shown[b]!, text.length - holdBack);
    while (!done[b] && !final && upTo > shown[b]! && text[upTo - 1] === '\uFFFD') upTo--;
    if (upTo > shown[b]!) onText?.(b, text.slice(shown[b]!, upTo));
    shown[b] = Math.max(shown[b]!, upTo);
  };
  try {
    const out = await model.generate(ids, {
      ...gen, autocast: AUTOCAST[precision], eosTokenId: eos,
      onStep: (sampled) => {
        sampled.forEach((id, b) => {
          if (done[b] || id === eos) { done[b] = true; return; }
          tokens[b]!.push(id);
          update(b, false);
        });
        return done.every(Boolean);
      },
    });
    out.dispose();
    for (let b = 0; b < numSamples; b++) update(b, true);
    return texts;
  } finally {
    ids.dispose();
  }
}
