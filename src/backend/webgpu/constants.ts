// WebGPU's numeric flags, spelled out so that nothing depends on the globals
// (GPUBufferUsage, GPUMapMode, GPUShaderStage) a runtime may or may not install.

export const BUFFER_MAP_READ = 0x0001;
export const BUFFER_COPY_SRC = 0x0004;
export const BUFFER_COPY_DST = 0x0008;
export const BUFFER_UNIFORM = 0x0040;
export const BUFFER_STORAGE = 0x0080;
export const BUFFER_QUERY_RESOLVE = 0x0200;
export const MAP_READ = 0x0001;
export const STAGE_COMPUTE = 0x4;

/** WebGPU's minStorageBufferOffsetAlignment is at most this: a binding may start on any multiple of it. */
export const OFFSET_ALIGN = 256;
