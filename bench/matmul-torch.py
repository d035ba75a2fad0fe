"""PyTorch's side of bench/matmul-vs-torch.ts: times float32 products on the CPU.

usage: matmul-torch.py CASES_JSON [--threads N]
CASES_JSON: a list of {"id", "m", "n", "k", "transA", "transB", "reps"}; operands are
stored as mixprec stores them (A [K, M] with transA, B [N, K] with transB) and read
through .t(), which is a view, as the Linear layers' backward does. Prints one
`RESULT {json}` line per case: the median of `reps` timed products after a warm-up
(wall time and the process's CPU time, all threads).
"""
import json, statistics, sys, time
import torch

cases = json.loads(sys.argv[1])
threads = int(sys.argv[sys.argv.index('--threads') + 1]) if '--threads' in sys.argv else 2
torch.set_num_threads(threads)
# The BLAS actually loaded (LD_LIBRARY_PATH may put OpenBLAS in front of Debian's reference BLAS).
with open('/proc/self/maps') as maps:
    openblas = sorted({line.split()[-1] for line in maps if 'libopenblas' in line})
blas = 'not OpenBLAS (reference BLAS?)'
if openblas:
    import ctypes
    get_core = ctypes.CDLL(openblas[0]).openblas_get_corename
    get_core.restype = ctypes.c_char_p
    # The kernels OpenBLAS chose: a CPU model it does not know gets slow generic ones.
    blas = f'OpenBLAS, {get_core().decode()} kernels'
torch.manual_seed(0)
for c in cases:
    m, n, k = c['m'], c['n'], c['k']
    a = torch.rand(k, m) - 0.5 if c['transA'] else torch.rand(m, k) - 0.5
    b = torch.rand(n, k) - 0.5 if c['transB'] else torch.rand(k, n) - 0.5
    A = a.t() if c['transA'] else a
    B = b.t() if c['transB'] else b
    out = torch.empty(m, n)
    t0 = time.perf_counter(); torch.matmul(A, B, out=out); first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(c['reps']):
        t0, c0 = time.perf_counter(), time.process_time()
        torch.matmul(A, B, out=out)
        times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    ms, cpu_ms = statistics.median(times) * 1e3, statistics.median(cpu) * 1e3
    print('RESULT ' + json.dumps(dict(id=c['id'], ms=ms, firstMs=first * 1e3, gflops=2 * m * n * k / (ms * 1e6),
                                      cpuMs=cpu_ms, gflopsPerCpuSecond=2 * m * n * k / (cpu_ms * 1e6),
                                      torch=torch.__version__, threads=threads, blas=blas)), flush=True)
