// The demo page: settings, one training worker per run (two side by side),
// live numbers and charts, text generation, and the model as a download.
import { NO_WEBGPU, PRECISIONS, type FromWorker, type HFModelFiles, type PrecisionChoice, type RunSettings, type TextData, type ToWorker } from './protocol.js';
import { emptySeries, renderCharts, type RunSeries } from './charts.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);

interface PageRun {
  worker: Worker;
  series: RunSeries;
  skipped: number;
}

let runs: PageRun[] = [];
let brown: TextData | null = null;
let userText: TextData | null = null;
let hfModel: HFModelFiles | null = null;

for (const select of [$<HTMLSelectElement>('precision'), $<HTMLSelectElement>('compare')]) {
  for (const [value, p] of [...Object.entries(PRECISIONS), ['policy', { label: 'policy string' }] as const]) {
    select.add(new Option(p.label, value));
  }
}
$<HTMLSelectElement>('precision').value = 'fp16';

function log(message: string): void {
  $('log').textContent = message;
}

function settingsFor(choice: PrecisionChoice): RunSettings {
  const number = (id: string) => Number(input(id).value);
  const base = choice === 'policy' ? { precision: input('policy').value.trim(), lossScale: 'auto' as const } : PRECISIONS[choice];
  return {
    precision: base.precision, lossScale: base.lossScale,
    batchSize: number('batch'), blockSize: number('block'), lr: number('lr'), maxSteps: number('steps'),
    evalInterval: number('eval'),
  };
}

/** The split of a user's text file: the last 10% is validation, as `mixprec train --data` does. */
function splitText(name: string, text: string): TextData {
  const cut = Math.floor(text.length * 0.9);
  return { source: name, train: text.slice(0, cut), validation: text.slice(cut) };
}

async function trainingText(): Promise<TextData> {
  if (userText) return userText;
  brown ??= (await (await fetch('./brown.json')).json()) as TextData;
  return brown;
}

let drawPending = false;
function redraw(): void {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    const charts = renderCharts(runs.map((r) => r.series));
    for (const [id, svg] of Object.entries(charts)) {
      let box = document.querySelector<HTMLElement>(`[data-testid="${id}"]`);
      if (!box) {
        box = document.createElement('div');
        box.dataset.testid = id;
        $('charts').append(box);
      }
      box.innerHTML = svg;
    }
  });
}

const percent = (f: number) => `${(100 * f).toPrecision(2)}%`;
const fmt = (x: number, digits = 3) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

function onMessage(run: PageRun, index: number, m: FromWorker): void {
  const s = run.series;
  const first = index === 0; // the numbers show the first run; the charts show all
  switch (m.type) {
    case 'adapter':
      if (first) {
        $('adapter').textContent = `WebGPU adapter: ${m.description}${m.isSoftware ? ' (a software renderer)' : ''}; `
          + (m.hasF16 ? 'shader-f16: yes (native float16 arithmetic).' : 'shader-f16: no, so float16 and bfloat16 are stored packed two to a 32-bit word and computed in float32.');
      }
      break;
    case 'no-webgpu':
      $('adapter').textContent = m.message;
      $('adapter').className = 'warning';
      break;
    case 'ready':
      if (first) log(`${m.modelSource}: ${m.parameters.toLocaleString('en')} parameters; ${m.tokenizer} tokenizer; ${m.dataTokens.toLocaleString('en')} training tokens.`);
      break;
    case 'step': {
      const r = m.report;
      s.train.push({ x: r.step, y: r.loss });
      s.scale.push({ x: r.step, y: r.scale });
      if (r.skipped) { s.skipped.push({ x: r.step, y: r.scale }); run.skipped += 1; }
      s.tokensPerSec.push({ x: r.step, y: r.tokensPerSec });
      s.memoryKiB.push({ x: r.step, y: r.memoryBytes / 1024 });
      if (first) {
        $('step').textContent = String(r.step);
        $('loss').textContent = fmt(r.loss);
        $('scale').textContent = r.scale === 1 ? '1 (off)' : String(r.scale);
        $('skipped').textContent = String(run.skipped);
        $('tps').textContent = Math.round(r.tokensPerSec).toLocaleString('en');
        $('mem').textContent = `${(r.memoryBytes / 2 ** 20).toFixed(1)} MiB`;
      }
      redraw();
      break;
    }
    case 'eval':
      s.validation.push({ x: m.step, y: m.loss });
      if (first) {
        $('valloss').textContent = fmt(m.loss);
        if (input('autogen').checked) requestSample();
      }
      redraw();
      break;
    case 'stats':
      s.histogram = { step: m.step, low: m.low, counts: m.counts };
      if (first) $('underflow').textContent = `${percent(m.float16Underflow)} / ${percent(m.bfloat16Underflow)}`;
      redraw();
      break;
    case 'running':
      if (first) {
        $<HTMLButtonElement>('stop').disabled = !m.running;
        $<HTMLButtonElement>('resume').disabled = m.running || m.finished;
        $<HTMLButtonElement>('download').disabled = false;
      }
      break;
    case 'sample':
      if (first) $('sample').textContent = m.prompt + m.text;
      break;
    case 'model':
      for (const f of m.files) {
        const a = document.createElement('a');
        a.href = URL.createObjectURL(new Blob([f.bytes]));
        a.download = f.name;
        a.click();
        setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
      }
      break;
    case 'error':
      log(`${s.label}: ${m.message}`);
      break;
  }
}

function send(m: ToWorker, which: PageRun[] = runs): void {
  for (const r of which) r.worker.postMessage(m);
}

function requestSample(): void {
  const prompt = $<HTMLTextAreaElement>('prompt').value || ' ';
  send({ type: 'generate', prompt, maxNewTokens: 120 }, runs.slice(0, 1));
}

async function startTraining(): Promise<void> {
  for (const r of runs) r.worker.terminate();
  const choices = [$<HTMLSelectElement>('precision').value, $<HTMLSelectElement>('compare').value].filter(Boolean) as PrecisionChoice[];
  const data = await trainingText();
  runs = choices.map((choice, i) => {
    const settings = settingsFor(choice);
    const label = choice === 'policy' ? settings.precision : PRECISIONS[choice].short;
    const run: PageRun = { worker: new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }), series: emptySeries(label), skipped: 0 };
    run.worker.onmessage = (e: MessageEvent<FromWorker>) => onMessage(run, i, e.data);
    run.worker.onerror = (e) => log(`${label}: the worker failed: ${e.message}`);
    // Each worker gets its own copy of the model files (the buffer is not transferred).
    run.worker.postMessage({ type: 'start', settings, data, model: hfModel } satisfies ToWorker);
    return run;
  });
  $('sample').textContent = '';
  redraw();
}

$('train').onclick = () => void startTraining().catch((e: Error) => log(e.message));
$('stop').onclick = () => send({ type: 'stop' });
$('resume').onclick = () => send({ type: 'resume' });
$('download').onclick = () => send({ type: 'download' }, runs.slice(0, 1));
$('generate').onclick = requestSample;

input('textfile').onchange = async () => {
  const file = input('textfile').files?.[0];
  userText = file ? splitText(file.name, await file.text()) : null;
  $('datainfo').textContent = userText ? `training on ${file!.name} (${userText.train.length.toLocaleString('en')} + ${userText.validation.length.toLocaleString('en')} characters)` : '';
};

input('hffiles').onchange = async () => {
  const files = Array.from(input('hffiles').files ?? []);
  const config = files.find((f) => f.name === 'config.json'), weights = files.find((f) => f.name.endsWith('.safetensors'));
  if (!config || !weights) {
    hfModel = null;
    log(files.length ? 'Pick both config.json and model.safetensors from the GPT-2 directory.' : '');
    return;
  }
  hfModel = { config: await config.text(), weights: await weights.arrayBuffer() };
  $('datainfo').textContent = `fine-tuning ${weights.name} (${(weights.size / 2 ** 20).toFixed(0)} MiB) with the GPT-2 tokenizer`;
};

if (!('gpu' in navigator)) {
  $('adapter').textContent = NO_WEBGPU;
  $('adapter').className = 'warning';
} else {
  $('adapter').textContent = 'WebGPU is available; press Train to start.';
}
redraw();
