// bench/device.sh --quick, run as the tests run everything: so that the GPU
// benchmark script keeps working between the rare runs on a machine with a GPU.
// Runs on the software adapter (lavapipe) in about half a minute.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'device.sh');
const POLICIES = ['fp32', 'fp16', 'fp16-master', 'bf16', 'bf16-master'];
const DTYPES = ['float32', 'float16', 'bfloat16'];

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** Runs the script into a fresh folder: its exit status, output and the one report it wrote. */
function runDeviceScript(env: Record<string, string> = {}) {
  const out = mkdtempSync(join(tmpdir(), 'mixprec-device-bench-'));
  dirs.push(out);
  const r = spawnSync('bash', [SCRIPT, '--quick', '--out', out], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 240_000 });
  const files = readdirSync(out).sort();
  return { status: r.status, output: `${r.stdout}\n${r.stderr}`, out, files };
}

const first = runDeviceScript();
const noAdapter = first.status !== 0 && /no WebGPU adapter/.test(first.output);
if (noAdapter && process.env.MIXPREC_REQUIRE_WEBGPU) throw new Error(`MIXPREC_REQUIRE_WEBGPU is set but bench/device.sh found no adapter:\n${first.output}`);
const skip = noAdapter ? 'bench/device.sh test skipped: no WebGPU adapter' : false;
if (skip) console.log(skip);

function report(run: ReturnType<typeof runDeviceScript>) {
  assert.equal(run.status, 0, run.output);
  const json = run.files.filter((f) => f.endsWith('.json'));
  assert.equal(json.length, 1, `one .json report, got ${run.files.join(', ')}`);
  const base = json[0]!.slice(0, -'.json'.length);
  assert.match(base, /^[a-z0-9-]+-quick$/, 'named after the adapter, with -quick');
  assert.ok(run.files.includes(`${base}.md`), `${base}.md written beside ${base}.json`);
  return {
    json: JSON.parse(readFileSync(join(run.out, `${base}.json`), 'utf8')),
    md: readFileSync(join(run.out, `${base}.md`), 'utf8'),
  };
}

test('bench/device.sh --quick writes the adapter, its features, matmul and training for every dtype and policy', { skip }, () => {
  const { json, md } = report(first);
  assert.deepEqual(json.failures, []);
  assert.deepEqual(json.backends, ['webgpu']);
  const w = json.machine.webgpu;
  assert.equal(w.available, true);
  assert.ok(w.adapter.length > 0);
  assert.ok(Array.isArray(w.features) && w.features.length > 0, 'the adapter features are listed');
  assert.equal(w.features.includes('shader-f16'), w.shaderF16, 'shader-f16 listed exactly when the backend uses it');
  assert.ok(Array.isArray(w.subgroupMatrixConfigs));
  assert.ok(w.maxStorageBufferBindingSize > 0 && w.maxBufferSize >= w.maxStorageBufferBindingSize);

  for (const dtype of DTYPES) {
    const rows = json.matmul.filter((r: { dtype: string }) => r.dtype === dtype);
    assert.ok(rows.length >= 2, `matmul ${dtype}: at least two sizes`);
    for (const r of rows) {
      assert.equal(r.finite, true, `matmul ${dtype} n=${r.n}: finite product`);
      assert.ok(Number.isFinite(r.gflops) && r.gflops > 0 && r.gflops < 1e6, `matmul ${dtype} n=${r.n}: ${r.gflops} GFLOP/s`);
    }
  }
  assert.ok(json.ceiling && Number.isFinite(json.ceiling.gflops) && json.ceiling.gflops > 0, `the adapter's float32 ceiling: ${json.ceiling?.gflops}`);
  for (const precision of POLICIES) {
    const row = json.train.find((r: { precision: string }) => r.precision === precision);
    assert.ok(row && row.runs.length === 1 && !row.error, `training ${precision} ran`);
    const run = row.runs[0];
    assert.ok(run.tokensPerSec > 0 && Number.isFinite(run.tokensPerSec), `${precision}: ${run.tokensPerSec} tokens/s`);
    assert.ok(run.peakBytes > 0, `${precision}: peak memory ${run.peakBytes}`);
    // Cross-entropy of an untrained model is near ln(vocabulary size).
    assert.ok(Math.abs(run.lossFirst - Math.log(run.vocabSize)) < 1, `${precision}: first loss ${run.lossFirst}`);
  }

  assert.match(md, /subgroup-matrix configurations:/);
  assert.match(md, /float32 ceiling, a kernel of multiply-adds on registers only .*\n.*\*\*[\d,.]+ GFLOP\/s\*\*/);
  assert.match(md, /\| float32 \| float16 \| bfloat16 \| f16 \/ f32 \| bf16 \/ f32 \|/);
  assert.match(md, /fp16 \/ fp32 = \*\*\d+\.\d\d\*\*, bf16 \/ fp32 = \*\*\d+\.\d\d\*\*/);
  for (const precision of POLICIES) assert.match(md, new RegExp(`\\| ${precision} \\| [\\d,]+ \\|`), `a training row for ${precision}`);
});

test('bench/device.sh keeps to its time budget and writes what it finished', { skip }, () => {
  const t0 = performance.now();
  const run = runDeviceScript({ BUDGET: '8' });
  const seconds = (performance.now() - t0) / 1000;
  const { json, md } = report(run);
  assert.ok(seconds < 8 + 30, `took ${seconds.toFixed(0)} s with an 8 s budget`);
  assert.equal(json.machine.webgpu.available, true);
  assert.ok(json.failures.some((f: string) => /skipped: the time budget/.test(f)), 'cases past the budget are reported as skipped');
  assert.match(md, /skipped: the time budget/);
});
