// Every op, as a function (the Tensor methods call these).

export * from './ops/elementwise.js';
export * from './ops/reduce.js';
export * from './ops/shape.js';
export * from './ops/linalg.js';
export * from './ops/nn.js';
