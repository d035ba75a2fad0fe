// split.test.ts again with buffers of at most 8 KiB: every tensor larger than
// that is held in several buffers, parts of an op bind windows in the buffer
// that holds them, and parts that straddle two buffers are staged through a
// buffer of their own. Every op must still agree with the CPU backend, and a
// GPT trained this way must follow the CPU's loss curve.

process.env.MIXPREC_WEBGPU_MAX_BUFFER = '8192';
await import('./split.test.js');
