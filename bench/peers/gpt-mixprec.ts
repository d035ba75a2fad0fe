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
import { MIXPREC_VERSION, backendInfo, peerTraining } from './common.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')) as [string, string][]);
const peers = resolve(args.peers ?? 'peers');
const common = await import(pathToFileURL(`${peers}/lib/common.mjs`).href);
const wl: string = args.workload ?? 'gpt-mini';
const w = common.WORKLOADS[wl];
const precision = args.precision ?? 'fp32';
const policy = mp.parsePolicy(precision);

const { backend } = await selectBackend((args.backend ?? 'auto') as 'auto' | 'cpu' | 'webgpu');
mp.setBackend(backend);
const { record } = peerTraining({ vocabSize: w.V, blockSize: w.T, nLayer: w.L, nHead: w.H, nEmbd: w.D, dropout: 0, bias: true }, backend, policy, common);

async function step(_k: number, x: Int32Array, y: Int32Array): Promise<number> {
  const loss = record(x, y, [w.B, w.T]);
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
