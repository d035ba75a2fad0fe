// The composed sampler, for backends without the `sample` kernel: the CPU
// reference over the logits read synchronously (which needs `readSync`).

import { BackendError, type Backend, type SampleSpec, type View } from '../../backend/backend.js';
import { sampleRow } from '../../backend/cpu/sample.js';

export function sample(b: Backend, logits: View, uniforms: View, out: View, spec: SampleSpec): void {
  if (!b.readSync) throw new BackendError(`${b.name}: sampling needs the sample kernel or synchronous reads (readSync)`);
  const l = b.readSync(logits), u = b.readSync(uniforms);
  const ids = new Int32Array(spec.rows);
  for (let r = 0; r < spec.rows; r++) ids[r] = sampleRow(l.subarray(r * spec.cols, (r + 1) * spec.cols), u[r]!, spec);
  b.write(out, ids);
}
