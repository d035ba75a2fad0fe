// mixprec on the peer-comparison workloads (gpt-mini, gpt-small): the same
// data, initialisation, AdamW settings and measurement protocol as the PyTorch,
// TensorFlow.js and jax-js scripts of the comparison harness, whose
// lib/common.mjs this script loads (--peers DIR).
//
//   node --import tsx bench/peers/gpt-mixprec.ts --peers=DIR --workload=gpt-mini \
//     --backend=webgpu --precision=fp16 --warmup=3 --steps=10
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import * as mp from '../../src/index.js';
import { selectBackend } from '../../src/train/select-backend.js';
import { MIXPREC_VERSION, backendInfo } from './common.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')) as [string, string][]);
const peers = resolve(args.peers ?? 'peers');
const common = await import(pathToFileURL(`${peers}/lib/common.mjs`).href);
const wl: string = args.workload ?? 'gpt-mini';
const w = common.WORKLOADS[wl];
const precision = args.precision ?? 'fp32';
const policy = mp.parsePolicy(precision);

const { backend } = await selectBackend((args.backend ?? 'auto') as 'auto' | 'cpu' | 'webgpu');
mp.setBackend(backend);
const model = new mp.GPT({ vocabSize: w.V, blockSize: w.T, nLayer: w.L, nHead: w.H, nEmbd: w.D, dropout: 0, bias: true }, { init: 'gpt-mini', backend });
if (policy.params !== 'float32') model.to(policy.params as mp.FloatDType);
const named = model.namedParameters();
const decay = named.filter(([, p]) => p.ndim >= 2).map(([, p]) => p);
const noDecay = named.filter(([, p]) => p.ndim < 2).map(([, p]) => p);
const opt = new mp.AdamW([{ params: decay, weightDecay: common.WD }, { params: noDecay, weightDecay: 0 }],
  { lr: common.LR, betas: [common.BETA1, common.BETA2], eps: common.EPS });
const scaler = new mp.GradScaler({ enabled: policy.lossScaling !== 'none' });

async function step(_k: number, x: Int32Array, y: Int32Array): Promise<number> {
  const loss = mp.tidy(() => {
    const ids = mp.tensor(x, { shape: [w.B, w.T], dtype: 'int32' });
    const targets = mp.tensor(y, { shape: [w.B, w.T], dtype: 'int32' });
    const l = mp.withPolicy(policy, () => model.forward(ids, targets).loss!);
    scaler.scale(l).backward();
    scaler.step(opt);
    scaler.update();
    opt.zeroGrad();
    return l;
  });
  const v = await loss.item();
  loss.dispose();
  return v;
}

await common.runProtocol({
  tag: { framework: `mixprec-${MIXPREC_VERSION}`, backend: backend.name, backend_info: backendInfo(backend), precision },
  wl, warmup: +(args.warmup ?? 3), steps: +(args.steps ?? 10), stepFn: step,
});
// Dawn keeps the process alive while a device exists.
process.exit(0);
