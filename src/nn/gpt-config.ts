// GPT configurations: nanoGPT's fields, named presets from a toy to GPT-2
// medium, validation that names the first bad field, and the parameter list a
// configuration implies (Hugging Face names), computed without allocating.

import { sizeOf } from '../dtype/shape.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export interface GPTConfig {
  vocabSize: number;
  /** Context length: the number of learned positions. */
  blockSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  /** Dropout on the embeddings, the attention output and the MLP output (0 disables it). */
  dropout: number;
  /** Dropout on the attention probabilities (Hugging Face's attn_pdrop; default `dropout`, as nanoGPT). */
  attnDropout?: number;
  /** Biases in the linear layers and LayerNorms (GPT-2 has them). */
  bias: boolean;
  /** Width of the MLP's hidden layer (default 4 * nEmbd). */
  nInner?: number;
  /** LayerNorm epsilon (default 1e-5). */
  layerNormEps?: number;
}

export class GPTConfigError extends MixprecError {
  override readonly code: ErrorCode = 'GPT_CONFIG_INVALID';
}

const base = { dropout: 0, bias: true };

/** Named configurations, from a ~0.1M-parameter toy to GPT-2 medium. */
export const GPT_PRESETS = {
  /** 120,576 parameters: for tests. */
  tiny: { ...base, vocabSize: 256, blockSize: 64, nLayer: 2, nHead: 2, nEmbd: 64 },
  /** 842,496 parameters: the gpt-mini benchmark workload (byte vocabulary). */
  mini: { ...base, vocabSize: 256, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128 },
  /** 23,240,704 parameters: the gpt-small benchmark workload. */
  small: { ...base, vocabSize: 8192, blockSize: 256, nLayer: 6, nHead: 8, nEmbd: 512 },
  /** 124,439,808 parameters: GPT-2 (124M). */
  gpt2: { ...base, vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768 },
  /** 354,823,168 parameters: GPT-2 medium. */
  'gpt2-medium': { ...base, vocabSize: 50257, blockSize: 1024, nLayer: 24, nHead: 16, nEmbd: 1024 },
} as const satisfies Record<string, GPTConfig>;

export type GPTPreset = keyof typeof GPT_PRESETS;

/** A preset by name, with optional overrides (e.g. `{ dropout: 0.1 }`), validated. */
export function gptConfig(preset: string, overrides: Partial<GPTConfig> = {}): GPTConfig {
  if (!Object.hasOwn(GPT_PRESETS, preset)) {
    throw new GPTConfigError(`unknown GPT preset '${preset}' (known: ${Object.keys(GPT_PRESETS).join(', ')})`);
  }
  return validateConfig({ ...GPT_PRESETS[preset as GPTPreset], ...overrides });
}

/** Checks every field, naming the first bad one; returns a complete copy. */
export function validateConfig(c: GPTConfig): GPTConfig {
  const positive = (key: keyof GPTConfig) => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new GPTConfigError(`GPT config: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
    }
  };
  for (const k of ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nEmbd'] as const) positive(k);
  if (c.nInner !== undefined) positive('nInner');
  if (c.nEmbd % c.nHead !== 0) throw new GPTConfigError(`GPT config: nEmbd ${c.nEmbd} is not divisible by nHead ${c.nHead}`);
  const attnDropout = c.attnDropout ?? c.dropout;
  for (const [key, p] of [['dropout', c.dropout], ['attnDropout', attnDropout]] as const) {
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new GPTConfigError(`GPT config: ${key} must be in [0, 1), got ${JSON.stringify(p)}`);
  }
  if (typeof c.bias !== 'boolean') throw new GPTConfigError(`GPT config: bias must be true or false, got ${JSON.stringify(c.bias)}`);
  const eps = c.layerNormEps ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new GPTConfigError(`GPT config: layerNormEps must be a positive number, got ${JSON.stringify(eps)}`);
  return { ...c, attnDropout, nInner: c.nInner ?? 4 * c.nEmbd, layerNormEps: eps };
}

/** Parameter names and shapes in order (Hugging Face names; the tied head is not listed). */
export function parameterShapes(config: GPTConfig): [string, number[]][] {
  const c = validateConfig(config);
  const { vocabSize: V, blockSize: P, nEmbd: C, nInner: I } = c as Required<GPTConfig>;
  const out: [string, number[]][] = [['wte.weight', [V, C]], ['wpe.weight', [P, C]]];
  const b = (name: string, shape: number[]) => (c.bias ? [[name, shape] as [string, number[]]] : []);
  for (let l = 0; l < c.nLayer; l++) {
    const h = `h.${l}.`;
    out.push(
      [`${h}ln_1.weight`, [C]], ...b(`${h}ln_1.bias`, [C]),
      [`${h}attn.c_attn.weight`, [C, 3 * C]], ...b(`${h}attn.c_attn.bias`, [3 * C]),
      [`${h}attn.c_proj.weight`, [C, C]], ...b(`${h}attn.c_proj.bias`, [C]),
      [`${h}ln_2.weight`, [C]], ...b(`${h}ln_2.bias`, [C]),
      [`${h}mlp.c_fc.weight`, [C, I]], ...b(`${h}mlp.c_fc.bias`, [I]),
      [`${h}mlp.c_proj.weight`, [I, C]], ...b(`${h}mlp.c_proj.bias`, [C]),
    );
  }
  out.push(['ln_f.weight', [C]], ...b('ln_f.bias', [C]));
  return out;
}

/** Number of parameters (the tied head counted once), without allocating the model. */
export function countParameters(config: GPTConfig): number {
  return parameterShapes(config).reduce((n, [, s]) => n + sizeOf(s), 0);
}
