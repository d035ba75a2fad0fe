// Opening a trained model for evaluation or sampling: a run directory, its
// checkpoint directory, or any Hugging Face GPT-2 directory.

import { join, resolve } from 'node:path';
import { stat } from 'node:fs/promises';
import type { Backend } from '../backend/backend.js';
import type { FloatDType } from '../dtype/dtype.js';
import type { GPT } from '../nn/gpt.js';
import { CheckpointError, CheckpointReplacedError, isCheckpointDir, loadCheckpointModel, readCheckpoint, type Checkpoint } from '../io/checkpoint.js';
import { CONFIG_FILE, loadGPT2 } from '../io/gpt2.js';
import type { TokenizerName } from '../data/tokenizer.js';
import { resolveTrainConfig, type TrainConfig } from './config.js';
import { CHECKPOINT_DIR } from './trainer.js';

export interface OpenedModel {
  model: GPT;
  /** The directory the weights came from. */
  dir: string;
  /** The training run's configuration, for a training checkpoint. */
  config: TrainConfig | null;
  /** Steps trained, for a training checkpoint. */
  step: number | null;
  /** The tokenizer the model was trained with (or the one its vocabulary implies). */
  tokenizer: TokenizerName | null;
}

/** The checkpoint directory for a run directory or a checkpoint directory; else the directory itself. */
export async function resolveModelDir(path: string): Promise<{ dir: string; training: boolean }> {
  const dir = resolve(path);
  // Checked first: a checkpoint directory is briefly absent while a save swaps it in.
  if (await isCheckpointDir(dir)) return { dir, training: true };
  const s = await stat(dir).catch(() => null);
  if (!s) throw new CheckpointError(dir, 'does not exist');
  if (!s.isDirectory()) throw new CheckpointError(dir, 'is not a directory');
  const inner = join(dir, CHECKPOINT_DIR);
  if (await isCheckpointDir(inner)) return { dir: inner, training: true };
  if (await stat(join(dir, CONFIG_FILE)).then(() => true, () => false)) return { dir, training: false };
  throw new CheckpointError(dir, `holds neither a training checkpoint (${CHECKPOINT_DIR}/trainer_state.json) nor a GPT-2 model (${CONFIG_FILE})`);
}

/** Loads of a checkpoint that concurrent saves keep replacing, before giving up. */
const MAX_LOAD_ATTEMPTS = 5;

function tokenizerForVocab(vocabSize: number): TokenizerName | null {
  return vocabSize === 256 ? 'byte' : vocabSize === 50257 ? 'gpt2' : null;
}

/** What a model directory holds, read and checked before the weights are loaded. */
export interface ModelDirInfo {
  dir: string;
  checkpoint: Checkpoint | null;
  /** The training run's configuration, for a training checkpoint. */
  config: TrainConfig | null;
  /** Steps trained, for a training checkpoint. */
  step: number | null;
}

export async function inspectModelDir(path: string): Promise<ModelDirInfo> {
  const { dir, training } = await resolveModelDir(path);
  if (!training) return { dir, checkpoint: null, config: null, step: null };
  return inspectCheckpoint(dir);
}

async function inspectCheckpoint(dir: string): Promise<ModelDirInfo> {
  const checkpoint = await readCheckpoint(dir);
  const config = resolveTrainConfig(checkpoint.state.config as Partial<TrainConfig>);
  return { dir, checkpoint, config, step: checkpoint.state.step };
}

/** Loads the model of a run, checkpoint or GPT-2 directory (inspected first, or given by path). */
export async function openModelDir(target: string | ModelDirInfo, opts: { backend?: Backend; dtype?: FloatDType } = {}): Promise<OpenedModel> {
  let info = typeof target === 'string' ? await inspectModelDir(target) : target;
  let model: GPT | undefined;
  // A run that is still training may replace its checkpoint while it is loaded: then the newer one is
  // read, as a checkpoint again (it is one, even if a save is moving it right now).
  for (let attempt = 1; !model; attempt++) {
    try {
      model = info.checkpoint ? await loadCheckpointModel(info.checkpoint, opts) : await loadGPT2(info.dir, opts);
    } catch (err) {
      if (!(err instanceof CheckpointReplacedError) || attempt === MAX_LOAD_ATTEMPTS) throw err;
      info = await inspectCheckpoint(info.dir);
    }
  }
  const tokenizer = info.config?.tokenizer ?? tokenizerForVocab(model.config.vocabSize);
  return { model, dir: info.dir, config: info.config, step: info.step, tokenizer };
}
