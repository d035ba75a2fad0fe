// The messages between the page and a training worker. One worker trains one
// run; side by side means two workers.

/** What the page says where the browser has no WebGPU. */
export const NO_WEBGPU = 'This browser does not offer WebGPU (navigator.gpu is missing): use a recent Chrome or Edge, or Firefox or Safari with WebGPU enabled, on a secure (https or localhost) page.';

/** The precision choices of the page, as a policy string and a loss-scaling setting. */
export const PRECISIONS = {
  fp32: { label: 'fp32', short: 'fp32', precision: 'fp32', lossScale: 'none' },
  fp16: { label: 'fp16, dynamic loss scaling', short: 'fp16 dyn.', precision: 'fp16', lossScale: 'dynamic' },
  'fp16-noscale': { label: 'fp16, no loss scaling', short: 'fp16 unscaled', precision: 'fp16', lossScale: 'none' },
  bf16: { label: 'bf16', short: 'bf16', precision: 'bf16', lossScale: 'none' },
} as const;
export type PrecisionChoice = keyof typeof PRECISIONS | 'policy';

export interface RunSettings {
  /** A policy string (a preset name or e.g. "compute=float16,params=float32"). */
  precision: string;
  lossScale: 'dynamic' | 'none' | 'auto';
  batchSize: number;
  blockSize: number;
  lr: number;
  maxSteps: number;
  evalInterval: number;
}

/** Training text, already split. */
export interface TextData {
  source: string;
  train: string;
  validation: string;
}

/** A Hugging Face GPT-2 directory's two files, as picked from disk. */
export interface HFModelFiles {
  config: string;
  weights: ArrayBuffer;
}

export type ToWorker =
  | { type: 'start'; settings: RunSettings; data: TextData; model: HFModelFiles | null }
  | { type: 'stop' }
  | { type: 'resume' }
  | { type: 'generate'; prompt: string; maxNewTokens: number }
  | { type: 'download' };

export interface StepReport {
  step: number;
  loss: number;
  scale: number;
  skipped: boolean;
  tokensPerSec: number;
  memoryBytes: number;
}

export type FromWorker =
  | { type: 'adapter'; description: string; hasF16: boolean; isSoftware: boolean }
  | { type: 'no-webgpu'; message: string }
  | { type: 'ready'; parameters: number; tokenizer: string; dataTokens: number; modelSource: string }
  | { type: 'step'; report: StepReport }
  | { type: 'eval'; step: number; loss: number }
  /** The sampled gradients' log2-magnitude histogram, and the fractions that float16 and bfloat16 would round to zero. */
  | { type: 'stats'; step: number; scale: number; low: number; counts: number[]; float16Underflow: number; bfloat16Underflow: number }
  | { type: 'running'; running: boolean; finished: boolean }
  | { type: 'sample'; prompt: string; text: string }
  | { type: 'model'; files: { name: string; bytes: ArrayBuffer }[] }
  | { type: 'error'; message: string };
