// Validation loss on fixed windows: mean cross-entropy in nats per token (and
// per byte for byte-level tokenizers, where a token is a byte) and perplexity.
// Runs without gradients and without dropout, under the given precision policy;
// the per-batch losses are summed on the backend and read back once.

import { noGrad } from '../autograd/backward.js';
import { withPolicy, type Policy } from '../amp/policy.js';
import type { GPT } from '../nn/gpt.js';
import { tensor } from '../tensor/creation.js';
import { add } from '../tensor/ops.js';
import { Tensor, tidy } from '../tensor/tensor.js';
import type { Batch } from '../data/batches.js';
import type { TokenizerName } from '../data/tokenizer.js';

export interface EvalResult {
  /** Nats per token. */
  valLoss: number;
  /** Nats per byte; only for the byte tokenizer. */
  valLossPerByte?: number;
  perplexity: number;
  evalTokens: number;
}

/** Int32 [batchSize, blockSize] tensors of a batch on the model's backend. */
export function batchTensors(model: GPT, b: Batch, batchSize: number, blockSize: number): { x: Tensor; y: Tensor } {
  const shape = [batchSize, blockSize];
  return {
    x: tensor(b.x, { shape, dtype: 'int32', backend: model.backend }),
    y: tensor(b.y, { shape, dtype: 'int32', backend: model.backend }),
  };
}

export async function evaluateLoss(
  model: GPT,
  batches: readonly Batch[],
  opts: { policy: Policy; batchSize: number; blockSize: number; tokenizer: TokenizerName },
): Promise<EvalResult> {
  const wasTraining = model.training;
  model.eval();
  let total: Tensor | null = null;
  try {
    for (const b of batches) {
      const sum: Tensor = noGrad(() => tidy(() => {
        const { x, y } = batchTensors(model, b, opts.batchSize, opts.blockSize);
        const loss = withPolicy(opts.policy, () => model.loss(x, y));
        return total ? add(total, loss) : loss;
      }));
      total?.dispose();
      total = sum;
    }
    if (!total) throw new Error('evaluateLoss: no batches to evaluate');
    const valLoss = (await total.item()) / batches.length;
    return {
      valLoss,
      ...(opts.tokenizer === 'byte' ? { valLossPerByte: valLoss } : {}),
      perplexity: Math.exp(valLoss),
      evalTokens: batches.length * opts.batchSize * opts.blockSize,
    };
  } finally {
    total?.dispose();
    model.train(wasTraining);
  }
}
