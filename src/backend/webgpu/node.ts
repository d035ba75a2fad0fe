// Node only: WebGPU through the `webgpu` package (Dawn). Loaded with a dynamic
// import, and only where `navigator.gpu` is absent, so that browsers never see it.

/**
 * Dawn instance toggles. `vulkan_enable_f16_on_nvidia` exposes shader-f16 on
 * NVIDIA's Vulkan driver (Dawn hides it there by default); it needs
 * `allow_unsafe_apis`. Both are harmless elsewhere.
 */
const DAWN_FEATURES = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia'];

interface WebGPUPackage {
  create(options: string[]): GPU;
}

/**
 * A GPU object from the `webgpu` package. `extra` are further Dawn options
 * ('backend=vulkan', 'adapter=NAME', 'enable-dawn-features=a,b', ...); extra
 * enabled features are merged with ours.
 */
export async function nodeGPU(extra: readonly string[] = []): Promise<GPU> {
  // Vulkan's software driver wants a runtime directory; default it rather than fail.
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = (await import('node:os')).tmpdir();
  // A variable specifier keeps bundlers from following this import into browser builds.
  const specifier = 'webgpu';
  const pkg = (await import(specifier)) as WebGPUPackage;
  const features = [...DAWN_FEATURES];
  const rest: string[] = [];
  for (const o of extra) {
    const m = /^enable-dawn-features=(.*)$/.exec(o);
    if (m) features.push(...m[1]!.split(',').filter(Boolean));
    else rest.push(o);
  }
  return pkg.create([`enable-dawn-features=${[...new Set(features)].join(',')}`, ...rest]);
}
