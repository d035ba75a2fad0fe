// GPT parameter initialisations: GPT-2's normal(0.02) drawn from the model's
// generator, and the benchmark workloads' counter hash (bit-identical to the
// reference implementations in Python and JavaScript).

import { mix32 } from '../backend/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { parameterShapes } from './gpt-config.js';
import type { GPT } from './gpt.js';

/** How parameters are initialised: GPT-2's normal(0.02), the benchmarks' counter hash, or not at all (zeros; for loading). */
export type GPTInit = 'gpt2' | 'gpt-mini' | 'none';

/** The standard deviation GPT-2 gives a parameter; undefined for LayerNorm gains (1) and biases (0). */
function initStd(name: string, nLayer: number): number | undefined {
  if (name.endsWith('.bias') || /(^|\.)ln_(1|2|f)\.weight$/.test(name)) return undefined;
  // Residual projections are scaled so the residual stream's variance does not grow with depth.
  if (name.endsWith('.c_proj.weight')) return 0.02 / Math.sqrt(2 * nLayer);
  return 0.02;
}

function fillParameter(t: Tensor, values: ArrayLike<number>): void {
  t.backend.write(t.storageView, values);
}

/** GPT-2 initialisation: normal(0, 0.02), residual projections 0.02/sqrt(2 nLayer), biases 0, gains 1; drawn from model.generator in parameter order. */
export function gpt2Init(model: GPT): void {
  for (const [name, t] of model.namedParameters()) {
    const std = initStd(name, model.config.nLayer);
    if (std === undefined) {
      t.backend.fill(t.storageView, name.endsWith('.bias') ? 0 : 1);
      continue;
    }
    const z = model.generator.normal(t.size);
    for (let i = 0; i < z.length; i++) z[i]! *= std;
    fillParameter(t, z);
  }
}

/**
 * The benchmark workloads' deterministic initialisation (uniform with GPT-2's stds,
 * from a lowbias32 counter hash of element index and parameter index), identical to
 * the reference implementations in Python and JavaScript bit for bit.
 */
export function gptMiniInit(model: GPT): void {
  // Parameter index p counts over the canonical list, which has every bias.
  const canonical = parameterShapes({ ...model.config, bias: true }).map(([n]) => n);
  for (const [name, t] of model.namedParameters()) {
    const std = initStd(name, model.config.nLayer);
    if (std === undefined) {
      t.backend.fill(t.storageView, name.endsWith('.bias') ? 0 : 1);
      continue;
    }
    const p = canonical.indexOf(name);
    const key = Math.imul(0x9e3779b9, p + 1) >>> 0;
    const w = new Float64Array(t.size);
    for (let i = 0; i < t.size; i++) {
      const u = (mix32((i + key) >>> 0) >>> 8) / 16777216;
      w[i] = Math.fround((2 * u - 1) * Math.sqrt(3) * std);
    }
    fillParameter(t, w);
  }
}
