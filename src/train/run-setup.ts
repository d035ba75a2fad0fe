// What a training run is built from: the GPT configuration of a run trained
// from scratch, AdamW with nanoGPT's weight-decay groups, and the GradScaler of
// a loss-scaling setting.

import type { Backend } from '../backend/backend.js';
import { GradScaler } from '../amp/grad-scaler.js';
import type { LossScaling } from '../amp/policy.js';
import { gptConfig, type GPT, type GPTConfig } from '../nn/gpt.js';
import { AdamW } from '../optim/adamw.js';
import { TrainConfigError, resolveLossScale, type TrainConfig } from './config.js';

/** AdamW with nanoGPT's grouping: matrices and embeddings decay, biases and LayerNorm gains do not. */
export function createOptimizer(model: GPT, c: Pick<TrainConfig, 'lr' | 'weightDecay' | 'beta1' | 'beta2'> & Partial<Pick<TrainConfig, 'masterWeights'>>): AdamW {
  const params = model.parameters();
  const decay = params.filter((p) => p.ndim >= 2);
  const noDecay = params.filter((p) => p.ndim < 2);
  return new AdamW([{ params: decay, weightDecay: c.weightDecay }, { params: noDecay, weightDecay: 0 }], {
    lr: c.lr, betas: [c.beta1, c.beta2], masterWeights: c.masterWeights ?? true,
  });
}

/** The GradScaler for a loss-scaling setting: dynamic (with the run's minScale and hysteresis), a fixed scale, or disabled. */
export function createScaler(config: TrainConfig, backend: Backend): GradScaler {
  return scalerFor(resolveLossScale(config), backend, config);
}

/** The GradScaler of a policy's loss scaling; dynamic scaling with PyTorch's defaults unless guards are given. */
export function scalerFor(scaling: LossScaling, backend: Backend, guards: { minScale?: number; hysteresis?: number } = {}): GradScaler {
  if (scaling === 'none') return new GradScaler({ enabled: false, backend });
  if (scaling === 'dynamic') return new GradScaler({ backend, minScale: guards.minScale ?? 0, hysteresis: guards.hysteresis ?? 1 });
  return new GradScaler({ initScale: scaling, dynamic: false, backend });
}

/** The GPT configuration of a run trained from scratch. */
export function modelConfig(c: TrainConfig, vocabSize: number): GPTConfig {
  const overrides: Partial<GPTConfig> = { vocabSize, blockSize: c.blockSize, dropout: c.dropout };
  if (c.nLayer !== null) overrides.nLayer = c.nLayer;
  if (c.nHead !== null) overrides.nHead = c.nHead;
  if (c.nEmbd !== null) overrides.nEmbd = c.nEmbd;
  try {
    return gptConfig(c.model, overrides);
  } catch (err) {
    throw new TrainConfigError('model', `--model: ${(err as Error).message}`);
  }
}
