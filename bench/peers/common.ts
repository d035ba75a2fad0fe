// What the peer-workload scripts of mixprec share: the version, a short
// description of the backend in the style of the peers' `backend_info` column,
// and the workload's training set-up.

import { readFileSync } from 'node:fs';
import type { Backend } from '../../src/backend/backend.js';
import * as mp from '../../src/index.js';

export const MIXPREC_VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

/** "lavapipe, shader-f16" for Mesa's software Vulkan, else the adapter's description; "pure TypeScript" on the CPU. */
export function backendInfo(backend: Backend): string {
  const info = (backend as Backend & { adapterInfo?: { description: string; hasF16: boolean } }).adapterInfo;
  if (!info) return 'pure TypeScript';
  const name = /llvmpipe|lavapipe/i.test(info.description) ? 'lavapipe' : info.description;
  return `${name}${info.hasF16 ? ', shader-f16' : ''}`;
}

/** The peer workload's AdamW settings (the harness's lib/common.mjs holds the same). */
export interface PeerOptimizer { LR: number; BETA1: number; BETA2: number; EPS: number; WD: number }
export const PEER_OPTIMIZER: PeerOptimizer = { LR: 1e-3, BETA1: 0.9, BETA2: 0.95, EPS: 1e-8, WD: 0.1 };

/**
 * The peer workload's training: its initialisation, AdamW with weight decay on
 * matrices only, and a GradScaler where the policy scales the loss. `record`
 * records one step on [batch, time] tokens and returns its loss tensor.
 */
export function peerTraining(config: mp.GPTConfig, backend: Backend, policy: mp.Policy, o: PeerOptimizer = PEER_OPTIMIZER) {
  const model = new mp.GPT(config, { init: 'gpt-mini', backend });
  if (policy.params !== 'float32') model.to(policy.params as mp.FloatDType);
  const named = model.namedParameters();
  const opt = new mp.AdamW([
    { params: named.filter(([, p]) => p.ndim >= 2).map(([, p]) => p), weightDecay: o.WD },
    { params: named.filter(([, p]) => p.ndim < 2).map(([, p]) => p), weightDecay: 0 },
  ], { lr: o.LR, betas: [o.BETA1, o.BETA2], eps: o.EPS });
  const scaler = new mp.GradScaler({ enabled: policy.lossScaling !== 'none', backend });
  const record = (x: Int32Array, y: Int32Array, shape: [number, number]): mp.Tensor => mp.tidy(() => {
    const ids = mp.tensor(x, { shape, dtype: 'int32', backend });
    const targets = mp.tensor(y, { shape, dtype: 'int32', backend });
    const loss = mp.withPolicy(policy, () => model.forward(ids, targets).loss!);
    scaler.scale(loss).backward();
    scaler.step(opt);
    scaler.update();
    opt.zeroGrad();
    return loss;
  });
  return { model, record };
}
