// Precision policies: the whole mixed-precision set-up in one value, as in
// DeepMind's jmp. `params` is the dtype the model holds, `compute` the dtype
// of autocast's lower-precision ops, `output` the dtype of the model's
// outputs. Loss scaling follows from them: dynamic for float16 compute,
// none otherwise (bfloat16 has float32's exponent range).

import { parseDType, type DType } from '../dtype/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { to } from '../tensor/ops.js';
import { autocast } from './autocast.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export class PolicyError extends MixprecError {
  override readonly code: ErrorCode = 'POLICY_INVALID';
}

export type LossScaling = 'dynamic' | 'none' | number;

export interface Policy {
  readonly name: string;
  readonly params: DType;
  readonly compute: DType;
  readonly output: DType;
  readonly lossScaling: LossScaling;
}

type FloatName = 'float32' | 'float16' | 'bfloat16';

export const PRESETS: Readonly<Record<string, { params: FloatName; compute: FloatName; description: string }>> = {
  fp32: { params: 'float32', compute: 'float32', description: 'float32 everywhere' },
  fp16: { params: 'float32', compute: 'float16', description: 'float32 parameters, float16 compute under autocast, dynamic loss scaling (PyTorch AMP, Apex O1)' },
  'fp16-master': { params: 'float16', compute: 'float16', description: 'float16 parameters, float32 master weights in the optimizer, dynamic loss scaling (Apex O2)' },
  bf16: { params: 'float32', compute: 'bfloat16', description: 'float32 parameters, bfloat16 compute under autocast, no loss scaling' },
  'bf16-master': { params: 'bfloat16', compute: 'bfloat16', description: 'bfloat16 parameters, float32 master weights in the optimizer, no loss scaling' },
};

const KEYS: Record<string, 'params' | 'compute' | 'output'> = {
  params: 'params', p: 'params', param: 'params',
  compute: 'compute', c: 'compute',
  output: 'output', o: 'output', out: 'output',
};

function floatOnly(d: DType, key: string, value: string): DType {
  if (d !== 'float32' && d !== 'float16' && d !== 'bfloat16') {
    throw new PolicyError(`policy: '${key}=${value}': ${key} must be float32, float16 or bfloat16`);
  }
  return d;
}

function defaultScaling(compute: DType): LossScaling {
  return compute === 'float16' ? 'dynamic' : 'none';
}

/**
 * Parses a preset name (fp32, fp16, fp16-master, bf16, bf16-master) or a
 * policy string such as `params=float32,compute=float16,output=float32`
 * (short forms: `p=f32,c=bf16`; omitted keys default to float32, output to float32).
 */
export function parsePolicy(spec: string, lossScaling?: LossScaling): Policy {
  const s = spec.trim();
  const preset = PRESETS[s];
  if (preset) {
    return { name: s, params: preset.params, compute: preset.compute, output: 'float32', lossScaling: lossScaling ?? defaultScaling(preset.compute) };
  }
  if (!s.includes('=')) {
    throw new PolicyError(`policy: unknown preset '${spec}' (presets: ${Object.keys(PRESETS).join(', ')}; or a string like params=float32,compute=float16,output=float32)`);
  }
  const values: Partial<Record<'params' | 'compute' | 'output', DType>> = {};
  for (const part of s.split(',')) {
    const [rawKey, rawValue, ...extra] = part.split('=').map((x) => x.trim());
    if (!rawKey || rawValue === undefined || extra.length) throw new PolicyError(`policy: cannot parse '${part}' in '${spec}' (expected key=value)`);
    const key = KEYS[rawKey.toLowerCase()];
    if (!key) throw new PolicyError(`policy: unknown key '${rawKey}' in '${spec}' (keys: params, compute, output; short: p, c, o)`);
    if (values[key]) throw new PolicyError(`policy: '${key}' given twice in '${spec}'`);
    let d: DType;
    try {
      d = parseDType(rawValue, `${key} dtype`);
    } catch {
      throw new PolicyError(`policy: bad value '${rawValue}' for ${key} in '${spec}' (float32/f32, float16/f16, bfloat16/bf16)`);
    }
    values[key] = floatOnly(d, key, rawValue);
  }
  const params = values.params ?? 'float32', compute = values.compute ?? 'float32', output = values.output ?? 'float32';
  if ((params === 'float16' || params === 'bfloat16') && compute === 'float32') {
    throw new PolicyError(`policy: '${spec}': ${params} parameters with float32 compute is not supported (use compute=${params})`);
  }
  return { name: `params=${params},compute=${compute},output=${output}`, params, compute, output, lossScaling: lossScaling ?? defaultScaling(compute) };
}

/** Runs the forward pass fn under the policy's autocast (or plainly, for float32 compute). */
export function withPolicy<T>(policy: Policy, fn: () => T): T {
  if (policy.compute === 'float32') return fn();
  return autocast({ dtype: policy.compute as 'float16' | 'bfloat16' }, fn);
}

/** Casts a model output to the policy's output dtype. */
export function castOutput(policy: Policy, t: Tensor): Tensor {
  return t.dtype === policy.output || t.dtype === 'int32' ? t : to(t, policy.output);
}
