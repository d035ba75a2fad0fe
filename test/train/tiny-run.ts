// Shared by the training, checkpoint and command-line tests: a small text file
// and the options of a tiny run on the CPU backend (a few steps take a second).

import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TrainConfig } from '../../src/train/config.js';

/** About 20 kB of word salad with some structure to learn, the same on every call. */
export function tinyText(): string {
  const words = 'the quick brown fox jumps over a lazy dog while birds sing in green fields and cats sleep'.split(' ');
  let state = 12345;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 16;
  const lines: string[] = [];
  for (let i = 0; i < 350; i++) lines.push(Array.from({ length: 10 }, () => words[next() % words.length]).join(' ') + '.');
  return `${lines.join('\n')}\n`;
}

/** A fresh temporary directory holding data.txt. */
export async function tempRunRoot(prefix: string): Promise<{ root: string; dataFile: string }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  const dataFile = path.join(root, 'data.txt');
  await fs.writeFile(dataFile, tinyText());
  return { root, dataFile };
}

/** A tiny GPT (2 layers, width 64) on 4 x 32-token batches, CPU backend, dropout on so RNG state matters. */
export function tinyConfig(dataFile: string, overrides: Partial<TrainConfig> = {}): Partial<TrainConfig> {
  return {
    backend: 'cpu', model: 'tiny', data: dataFile, batchSize: 4, blockSize: 32, dropout: 0.1,
    maxSteps: 12, warmup: 2, logInterval: 1, evalInterval: 4, evalSteps: 2, saveInterval: 0,
    ...overrides,
  };
}

/** The same options as command-line arguments. */
export function tinyArgs(dataFile: string, extra: Record<string, string | number> = {}): string[] {
  const c = tinyConfig(dataFile) as Record<string, unknown>;
  const all: Record<string, unknown> = { ...c, ...extra };
  return Object.entries(all).flatMap(([k, v]) => [`--${k.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`)}`, String(v)]);
}
