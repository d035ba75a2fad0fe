// What the peer-harness scripts of mixprec share: the version and a short
// description of the backend, in the style of the peers' `backend_info` column.

import { readFileSync } from 'node:fs';
import type { Backend } from '../../src/backend/backend.js';

export const MIXPREC_VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

/** "lavapipe, shader-f16" for Mesa's software Vulkan, else the adapter's description; "pure TypeScript" on the CPU. */
export function backendInfo(backend: Backend): string {
  const info = (backend as Backend & { adapterInfo?: { description: string; hasF16: boolean } }).adapterInfo;
  if (!info) return 'pure TypeScript';
  const name = /llvmpipe|lavapipe/i.test(info.description) ? 'lavapipe' : info.description;
  return `${name}${info.hasF16 ? ', shader-f16' : ''}`;
}
