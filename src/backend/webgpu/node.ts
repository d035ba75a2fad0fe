// Node only: WebGPU through the `webgpu` package (Dawn). Loaded with a dynamic
// import, and only where `navigator.gpu` is absent, so that browsers never see it.

/**
 * Dawn instance toggles for NVIDIA's Vulkan driver, where Dawn hides shader-f16
 * by default: `vulkan_enable_f16_on_nvidia` exposes it and needs
 * `allow_unsafe_apis`. Both are asked for only when that adapter lacks
 * shader-f16 without them (see acquireDevice).
 */
const UNSAFE_F16_TOGGLES = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia'];

interface WebGPUPackage {
  create(options: string[]): GPU;
}

/**
 * The options for the package's create(): `extra` Dawn options ('backend=vulkan',
 * 'adapter=NAME', 'enable-dawn-features=a,b', ...), with the unsafe f16 toggles
 * merged into the enabled features when `unsafeF16` is set.
 */
export function dawnCreateOptions(extra: readonly string[], unsafeF16: boolean): string[] {
  const features = unsafeF16 ? [...UNSAFE_F16_TOGGLES] : [];
  const rest: string[] = [];
  for (const o of extra) {
    const m = /^enable-dawn-features=(.*)$/.exec(o);
    if (m) features.push(...m[1]!.split(',').filter(Boolean));
    else rest.push(o);
  }
  return features.length ? [`enable-dawn-features=${[...new Set(features)].join(',')}`, ...rest] : rest;
}

/** A GPU object from the `webgpu` package (see dawnCreateOptions). */
export async function nodeGPU(extra: readonly string[] = [], unsafeF16 = false): Promise<GPU> {
  // Vulkan's software driver wants a runtime directory; default it rather than fail.
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = (await import('node:os')).tmpdir();
  // A variable specifier keeps bundlers from following this import into browser builds.
  const specifier = 'webgpu';
  const pkg = (await import(specifier)) as WebGPUPackage;
  return pkg.create(dawnCreateOptions(extra, unsafeF16));
}
