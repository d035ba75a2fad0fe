// Training checkpoints: a directory holding everything a run needs to continue
// exactly where it stopped.
//
//   config.json, model.safetensors   the model, in the Hugging Face GPT-2 layout
//                                    (loadable by loadGPT2 and by transformers)
//   optimizer.safetensors            optimizer state by name (optimizer.namedState():
//                                    moments, float32 master weights, step counters)
//   optimizer.json                   the optimizer's type and parameter groups
//   scaler.json                      GradScaler state (scale, growth tracker, ...)
//   trainer_state.json               step, the run's configuration, RNG and data
//                                    positions, and the size and SHA-256 of every
//                                    other file; written last
//
// The directory is replaced as a whole (replaceDirectoryAtomic), so a crash during
// a save leaves the previous checkpoint, which the next save puts back in place.
// Reading never changes the disk (a training run may be saving while `mixprec
// eval` reads): it finds the complete checkpoint where a crash or a save in
// progress left it, reads it again if a save replaced it meanwhile, and checks
// every file against the digests, so damage is reported, never trained on.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { lstat, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import type { GeneratorState } from '../backend/random.js';
import type { FloatDType } from '../dtype/dtype.js';
import type { GradScaler, GradScalerState } from '../amp/grad-scaler.js';
import type { GPT } from '../nn/gpt.js';
import type { BaseOptions, Optimizer } from '../optim/optimizer.js';
import { currentDirectory, replaceDirectoryAtomic, writeFileAtomic } from './atomic.js';
import { CONFIG_FILE, WEIGHTS_FILE, loadGPT2, saveGPT2 } from './gpt2.js';
import { SafetensorsReader, toSafetensorsDType, writeSafetensors } from './safetensors.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export const OPTIMIZER_STATE_FILE = 'optimizer.safetensors';
export const OPTIMIZER_META_FILE = 'optimizer.json';
export const SCALER_FILE = 'scaler.json';
export const TRAINER_STATE_FILE = 'trainer_state.json';
export const CHECKPOINT_FORMAT = 'mixprec-training-checkpoint';
export const CHECKPOINT_VERSION = 1;

/** Files covered by the digests in trainer_state.json, in the order they are checked. */
const DIGESTED_FILES = [CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_STATE_FILE, OPTIMIZER_META_FILE, SCALER_FILE];
const MAX_JSON_BYTES = 1 << 26;
/** Reads of a checkpoint that concurrent saves keep replacing, before giving up. */
const MAX_READ_ATTEMPTS = 5;

/** A checkpoint that cannot be written or read; names the file and what is wrong with it. */
export class CheckpointError extends MixprecError {
  override readonly code: ErrorCode = 'CHECKPOINT_INVALID';
  constructor(readonly file: string, readonly fault: string, options?: { cause?: unknown }) {
    super(`checkpoint ${file}: ${fault}`, options);
  }
}

/** A checkpoint that a save replaced while it was being read; reading it again gets the new one. */
export class CheckpointReplacedError extends CheckpointError {
  override readonly code: ErrorCode = 'CHECKPOINT_REPLACED';
  constructor(dir: string, options?: { cause?: unknown }) {
    super(dir, 'was replaced by a newer save while it was being read', options);
  }
}

/** What a training loop keeps besides model, optimizer and scaler. Plain JSON. */
export interface TrainerState {
  /** Optimizer steps completed (iterations, skipped ones included). */
  step: number;
  /** The run's resolved configuration. */
  config: Record<string, unknown>;
  /** Random-number positions: the model's generator (dropout) and the data sampler. */
  rng: { model: GeneratorState };
  /** The data position (the batch sampler's state). */
  data: Record<string, unknown>;
  /** Anything else the loop wants back (elapsed time, tokens seen, ...). */
  progress: Record<string, unknown>;
}

interface TrainerStateFile extends TrainerState {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  /** Size and SHA-256 of every other file of the checkpoint. */
  files: Record<string, { bytes: number; sha256: string }>;
}

export interface OptimizerMeta {
  type: string;
  groups: { options: Record<string, unknown>; params: string[] }[];
  /** Random numbers drawn by stochastic rounding (when the optimizer uses it), so a resumed run draws the same ones. */
  stochasticRoundingCounter?: number;
}

export type ScalerFile = { enabled: false } | ({ enabled: true } & GradScalerState);

export interface CheckpointContents {
  model: GPT;
  optimizer: Optimizer<BaseOptions>;
  scaler: GradScaler;
  state: TrainerState;
}

// ---- saving ----------------------------------------------------------------------

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Size and SHA-256 of a file, read as a stream: an optimizer state file passes 2 GiB (GPT-2 medium's is 2.8 GB). */
export async function fileDigest(file: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).byteLength;
  }
  return { bytes, sha256: hash.digest('hex') };
}

function paramName(p: { name?: string }, index: number): string {
  return p.name ?? String(index);
}

/**
 * Writes a training checkpoint to `dir`, replacing any checkpoint there only once
 * the new one is complete on disk. If anything fails, `dir` is left as it was.
 */
export async function saveCheckpoint(dir: string, c: CheckpointContents): Promise<void> {
  const named = c.optimizer.namedState();
  let index = 0;
  const meta: OptimizerMeta = {
    type: c.optimizer.type,
    groups: c.optimizer.paramGroups.map((g) => ({
      options: { ...g.options } as unknown as Record<string, unknown>,
      params: g.params.map((p) => paramName(p, index++)),
    })),
    ...(c.optimizer.stochasticRoundingCounter === null ? {} : { stochasticRoundingCounter: c.optimizer.stochasticRoundingCounter }),
  };
  const scaler: ScalerFile = c.scaler.enabled ? { enabled: true, ...((await c.scaler.stateDict()) as GradScalerState) } : { enabled: false };
  await replaceDirectoryAtomic(dir, async (tmp) => {
    await saveGPT2(c.model, tmp);
    await writeSafetensors(join(tmp, OPTIMIZER_STATE_FILE), named.map(([name, t]) => ({
      name, dtype: toSafetensorsDType(t.dtype), shape: t.shape,
      data: async () => (await t.backend.readRaw(t.storageView)) as Float32Array,
    })), { format: 'mixprec-optimizer' });
    await writeFileAtomic(join(tmp, OPTIMIZER_META_FILE), json(meta));
    await writeFileAtomic(join(tmp, SCALER_FILE), json(scaler));
    const files: TrainerStateFile['files'] = {};
    for (const f of DIGESTED_FILES) files[f] = await fileDigest(join(tmp, f));
    const state: TrainerStateFile = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, ...c.state, files };
    await writeFileAtomic(join(tmp, TRAINER_STATE_FILE), json(state));
  });
}

// ---- loading ---------------------------------------------------------------------

/** A checkpoint directory whose files were found complete and intact. */
export interface Checkpoint {
  /** Where its files were read: the checkpoint directory, or the staged copy a save in progress left. */
  dir: string;
  /** Which save this is: the identity of its trainer_state.json (each save writes a new file). */
  save: string;
  state: TrainerState;
  optimizer: OptimizerMeta;
  scaler: ScalerFile;
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const s = await stat(file);
    if (s.size > MAX_JSON_BYTES) throw new CheckpointError(file, `is ${s.size} bytes, over the limit of ${MAX_JSON_BYTES}`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new CheckpointError(file, code === 'ENOENT' ? 'is missing' : `cannot be read (${(err as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(file, `is not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CheckpointError(file, 'is not a JSON object');
  return value as Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function checkTrainerState(file: string, s: Record<string, unknown>): TrainerStateFile {
  const fail = (key: string, fault: string): never => { throw new CheckpointError(file, `'${key}' ${fault}`); };
  if (s.format !== CHECKPOINT_FORMAT) fail('format', `is ${JSON.stringify(s.format)}, expected "${CHECKPOINT_FORMAT}" (not a mixprec training checkpoint)`);
  if (s.version !== CHECKPOINT_VERSION) fail('version', `is ${JSON.stringify(s.version)}; this version of mixprec reads version ${CHECKPOINT_VERSION}`);
  if (!isCount(s.step)) fail('step', `must be a non-negative integer, got ${JSON.stringify(s.step)}`);
  for (const key of ['config', 'data', 'progress', 'rng', 'files'] as const) if (!isObject(s[key])) fail(key, 'must be a JSON object');
  const model = (s.rng as Record<string, unknown>).model;
  if (!isObject(model) || !isCount(model.seed) || !isCount(model.offset)) fail('rng.model', `must be {seed, offset} with non-negative integers, got ${JSON.stringify(model)}`);
  const files = s.files as Record<string, unknown>;
  for (const f of DIGESTED_FILES) {
    const d = files[f];
    if (!isObject(d) || !isCount(d.bytes) || typeof d.sha256 !== 'string') fail(`files.${f}`, 'must be {bytes, sha256}');
  }
  return s as unknown as TrainerStateFile;
}

function checkOptimizerMeta(file: string, m: Record<string, unknown>): OptimizerMeta {
  if (typeof m.type !== 'string') throw new CheckpointError(file, `'type' must be a string, got ${JSON.stringify(m.type)}`);
  if (!Array.isArray(m.groups)) throw new CheckpointError(file, "'groups' must be an array");
  m.groups.forEach((g: unknown, k) => {
    if (!isObject(g) || !isObject(g.options) || !Array.isArray(g.params) || !g.params.every((p) => typeof p === 'string')) {
      throw new CheckpointError(file, `'groups[${k}]' must be {options: object, params: string[]}`);
    }
  });
  if (m.stochasticRoundingCounter !== undefined && !isCount(m.stochasticRoundingCounter)) {
    throw new CheckpointError(file, `'stochasticRoundingCounter' must be a non-negative integer, got ${JSON.stringify(m.stochasticRoundingCounter)}`);
  }
  return m as unknown as OptimizerMeta;
}

function checkScaler(file: string, s: Record<string, unknown>): ScalerFile {
  if (s.enabled === false) return { enabled: false };
  if (s.enabled !== true) throw new CheckpointError(file, `'enabled' must be true or false, got ${JSON.stringify(s.enabled)}`);
  for (const k of ['scale', 'growthFactor', 'backoffFactor', 'growthInterval', 'growthTracker']) {
    if (typeof s[k] !== 'number' || !Number.isFinite(s[k])) throw new CheckpointError(file, `'${k}' must be a finite number, got ${JSON.stringify(s[k])}`);
  }
  if (!((s.scale as number) > 0)) throw new CheckpointError(file, `'scale' must be positive, got ${s.scale}`);
  return s as unknown as ScalerFile;
}

/** Identifies the save in `dir` (null if there is none): every save writes a new trainer_state.json. */
async function saveIdentity(dir: string): Promise<string | null> {
  const s = await stat(join(dir, TRAINER_STATE_FILE), { bigint: true }).catch(() => null);
  return s && `${s.dev}:${s.ino}:${s.mtimeNs}:${s.size}`;
}

/** Identifies the directory now at `path` (null if there is none), to tell whether a save moved it. */
async function directoryIdentity(path: string): Promise<string | null> {
  const s = await lstat(path, { bigint: true }).catch(() => null);
  return s && `${s.dev}:${s.ino}`;
}

/** Waits a little longer at each attempt for a save that is moving the checkpoint to finish. */
const pause = (attempt: number): Promise<void> => sleep(10 * attempt);

/**
 * Whether `dir` holds a training checkpoint (trainer_state.json), complete or left
 * staged by a save in progress. A save may move the directory found between
 * finding it and looking into it; then it is looked for again, so that a checkpoint
 * is never taken for something else. Throws CheckpointReplacedError if saves keep
 * moving it.
 */
export async function isCheckpointDir(dir: string): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    const source = await currentDirectory(dir).catch(() => undefined);
    if (source === undefined) return false;
    const identity = await directoryIdentity(source);
    const stateFile = await stat(join(source, TRAINER_STATE_FILE)).catch(() => null);
    if (stateFile) return stateFile.isFile();
    // Still the same directory at the same place: it has no trainer_state.json of its own.
    if (identity !== null && (await directoryIdentity(source)) === identity) return false;
    if (attempt === MAX_READ_ATTEMPTS) throw new CheckpointReplacedError(dir);
    await pause(attempt);
  }
}

/**
 * Opens the checkpoint in `dir` without changing anything on disk: reads the
 * complete checkpoint (where an interrupted or ongoing save left it, see
 * currentDirectory), validates the JSON files and checks every file's size and
 * SHA-256 against trainer_state.json. A save that replaces the checkpoint
 * meanwhile makes it read again. Throws CheckpointError naming the file and the fault.
 */
export async function readCheckpoint(dir: string): Promise<Checkpoint> {
  for (let attempt = 1; ; attempt++) {
    const source = (await currentDirectory(dir).catch(() => undefined)) ?? dir;
    const save = await saveIdentity(source);
    let fault: unknown;
    try {
      const ckpt = await readCheckpointAt(source, save);
      if ((await saveIdentity(source)) === save) return ckpt;
    } catch (err) {
      fault = err;
    }
    if (save !== null && (await saveIdentity(source)) === save) throw fault; // a fault of the checkpoint itself
    if (attempt === MAX_READ_ATTEMPTS) throw fault ?? new CheckpointReplacedError(dir);
    await pause(attempt);
  }
}

async function readCheckpointAt(dir: string, save: string | null): Promise<Checkpoint> {
  const dirStat = await stat(dir).catch(() => null);
  if (!dirStat) throw new CheckpointError(dir, 'does not exist');
  if (!dirStat.isDirectory()) throw new CheckpointError(dir, 'is not a directory');
  const stateFile = join(dir, TRAINER_STATE_FILE);
  if (save === null) {
    throw new CheckpointError(dir, `has no ${TRAINER_STATE_FILE}: not a training checkpoint (a plain GPT-2 directory can be used with --init-from)`);
  }
  const state = checkTrainerState(stateFile, await readJson(stateFile));
  for (const f of DIGESTED_FILES) {
    const path = join(dir, f);
    const expected = state.files[f]!;
    let actual: { bytes: number; sha256: string };
    try {
      actual = await fileDigest(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CheckpointError(path, code === 'ENOENT' ? 'is missing' : `cannot be read (${(err as Error).message})`);
    }
    if (actual.bytes !== expected.bytes) throw new CheckpointError(path, `is ${actual.bytes} bytes, ${TRAINER_STATE_FILE} recorded ${expected.bytes} (truncated or altered)`);
    if (actual.sha256 !== expected.sha256) throw new CheckpointError(path, `content does not match the SHA-256 recorded in ${TRAINER_STATE_FILE} (the file is damaged or was altered)`);
  }
  const optimizer = checkOptimizerMeta(join(dir, OPTIMIZER_META_FILE), await readJson(join(dir, OPTIMIZER_META_FILE)));
  const scaler = checkScaler(join(dir, SCALER_FILE), await readJson(join(dir, SCALER_FILE)));
  const { format: _f, version: _v, files: _files, ...rest } = state;
  return { dir, save, state: rest, optimizer, scaler };
}

/**
 * The checkpoint's model (loadGPT2 of its directory). Throws CheckpointReplacedError
 * if a save replaced the checkpoint while it was loaded (read it again then).
 */
export async function loadCheckpointModel(ckpt: Checkpoint, opts: { backend?: Backend | string; dtype?: FloatDType } = {}): Promise<GPT> {
  let model: GPT;
  try {
    model = await loadGPT2(ckpt.dir, { backend: opts.backend, dtype: opts.dtype });
  } catch (err) {
    if ((await saveIdentity(ckpt.dir)) !== ckpt.save) throw new CheckpointReplacedError(ckpt.dir, { cause: err });
    throw err;
  }
  if ((await saveIdentity(ckpt.dir)) !== ckpt.save) {
    model.dispose();
    throw new CheckpointReplacedError(ckpt.dir);
  }
  model.generator.setState(ckpt.state.rng.model);
  return model;
}

/**
 * Writes the checkpoint's optimizer state into `optimizer`, which must have been
 * built the same way (same type, groups and parameters, by name). Checks
 * everything before writing anything.
 */
export async function restoreOptimizer<O extends BaseOptions>(ckpt: Checkpoint, optimizer: Optimizer<O>): Promise<void> {
  const metaFile = join(ckpt.dir, OPTIMIZER_META_FILE);
  const meta = ckpt.optimizer;
  if (meta.type !== optimizer.type) throw new CheckpointError(metaFile, `holds the state of a ${meta.type} optimizer, the run uses ${optimizer.type}`);
  if (meta.groups.length !== optimizer.paramGroups.length) {
    throw new CheckpointError(metaFile, `has ${meta.groups.length} parameter groups, the run's optimizer has ${optimizer.paramGroups.length}`);
  }
  let index = 0;
  optimizer.paramGroups.forEach((g, k) => {
    const names = g.params.map((p) => paramName(p, index++));
    const saved = meta.groups[k]!.params;
    if (saved.length !== names.length || saved.some((n, i) => n !== names[i])) {
      throw new CheckpointError(metaFile, `group ${k} holds parameters [${saved.slice(0, 4).join(', ')}${saved.length > 4 ? ', ...' : ''}] (${saved.length}), the run's optimizer [${names.slice(0, 4).join(', ')}${names.length > 4 ? ', ...' : ''}] (${names.length})`);
    }
  });

  const file = join(ckpt.dir, OPTIMIZER_STATE_FILE);
  const reader = await SafetensorsReader.open(file);
  try {
    const named = optimizer.namedState();
    reader.checkNames(named.map(([n]) => n));
    for (const [name, t] of named) {
      const info = reader.info(name);
      const want = toSafetensorsDType(t.dtype);
      if (info.dtype !== want || info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
        throw new CheckpointError(file, `tensor '${name}' is ${info.dtype} [${info.shape.join(', ')}], the optimizer needs ${want} [${t.shape.join(', ')}]`);
      }
    }
    for (const [name, t] of named) t.backend.writeRaw(t.storageView, (await reader.read(name)).data as Float32Array);
  } finally {
    await reader.close();
  }
  optimizer.paramGroups.forEach((g, k) => {
    g.options = { ...g.options, ...(meta.groups[k]!.options as Partial<O>) };
  });
  optimizer.stochasticRoundingCounter = meta.stochasticRoundingCounter ?? 0;
}

/** Restores the scaler's scale and growth tracker; the scaler must be enabled exactly when it was at save time. */
export function restoreScaler(ckpt: Checkpoint, scaler: GradScaler): void {
  const file = join(ckpt.dir, SCALER_FILE);
  if (ckpt.scaler.enabled !== scaler.enabled) {
    throw new CheckpointError(file, `loss scaling was ${ckpt.scaler.enabled ? 'enabled' : 'disabled'} when saved, the run has it ${scaler.enabled ? 'enabled' : 'disabled'}`);
  }
  if (!ckpt.scaler.enabled) return;
  const { enabled: _e, ...state } = ckpt.scaler;
  scaler.loadStateDict(state);
}
