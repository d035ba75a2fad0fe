// How the command line reports failures: usage errors (exit status 2) with the
// command's usage, other known errors (exit status 1) as one line naming what
// is wrong, and anything unexpected with its stack.

import { UsageError, PROGRAM } from './args.js';
import type { OutputStream } from './progress.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, as shells report a run stopped by Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** Errors whose message already says what is wrong and where: no stack trace needed. */
const KNOWN = new Set([
  'TrainConfigError', 'CheckpointError', 'GPT2CheckpointError', 'SafetensorsError', 'DataError', 'TokenizerError',
  'BackendUnavailableError', 'WebGPUUnavailableError', 'DeviceLostError', 'GPUOutOfMemoryError', 'BufferTooLargeError',
  'GPTConfigError', 'GenerationError', 'PolicyError', 'GradScalerError', 'OptimizerError',
]);

/** Prints `err` for `command` and returns the exit status. */
export function reportError(err: unknown, command: string | null, stderr: OutputStream): number {
  const who = command ? `${PROGRAM} ${command}` : PROGRAM;
  if (err instanceof UsageError) {
    stderr.write(`${who}: error: ${err.message}\n${err.usage}\n`);
    return EXIT_USAGE;
  }
  if (err instanceof Error && KNOWN.has(err.name)) {
    stderr.write(`${who}: error: ${err.message}\n`);
    return EXIT_FAILURE;
  }
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  stderr.write(`${who}: unexpected error: ${text}\n`);
  return EXIT_FAILURE;
}
