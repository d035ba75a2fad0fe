// Waiting for a device promise (a buffer map, submitted work done) without
// spinning a core.
//
// Dawn's Node binding resolves its promises from a callback that reschedules
// itself with setImmediate for as long as one is pending: a busy loop on the
// main thread that, on a CPU adapter (lavapipe), takes a core from the threads
// doing the GPU's work (gpt-mini trained 30-45% faster on 2 cores without it).
// While a wait is pending, a callback of our own sleeps 1 ms in each turn of
// the event loop (Atomics.wait: the thread sleeps, no core is used), so Dawn's
// callback runs about once per millisecond. No global is replaced.

const SLEEP_MS = 0.5;
let pending = 0;
let throttling = false;
let cell: Int32Array | null = null;

/** Node's setImmediate and a sleep that blocks without spinning; null elsewhere (browsers resolve GPU promises themselves). */
function sleeper(): { immediate: (fn: () => void) => unknown; sleep: () => void } | null {
  const g = globalThis as { setImmediate?: (fn: () => void) => unknown };
  if (typeof g.setImmediate !== 'function' || typeof SharedArrayBuffer !== 'function') return null;
  cell ??= new Int32Array(new SharedArrayBuffer(4));
  const c = cell;
  return { immediate: g.setImmediate, sleep: () => Atomics.wait(c, 0, 0, SLEEP_MS) };
}

function throttle(s: NonNullable<ReturnType<typeof sleeper>>): void {
  if (pending === 0) {
    throttling = false;
    return;
  }
  s.sleep();
  s.immediate(() => throttle(s));
}

export async function deviceWait<T>(p: Promise<T>): Promise<T> {
  const s = sleeper();
  if (!s) return p;
  pending++;
  if (!throttling) {
    throttling = true;
    s.immediate(() => throttle(s));
  }
  try {
    return await p;
  } finally {
    pending--;
  }
}
