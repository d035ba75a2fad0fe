// Reverse mode: walk the recorded graph from a root tensor, in reverse
// topological order, and accumulate gradients into the leaves' `.grad`.
//
// Backward formulas run with recording and autocast off (each op's gradient is
// computed in the dtypes its forward op used), each inside a `tidy` so their
// temporaries are freed at once; a node's output gradient is freed as soon as
// its node has run, so peak memory stays near the forward pass's.

import { sizeOf } from '../dtype/shape.js';
import { withoutAutocast } from '../tensor/dispatch.js';
import { GradError, ShapeError, fmtShape } from '../tensor/errors.js';
import { withGradMode, type Edge, type Node } from '../tensor/graph.js';
import { Tensor, keep, setBackwardHook, tidy } from '../tensor/tensor.js';
import { add, to } from '../tensor/ops.js';
import { onesLike } from '../tensor/creation.js';

function sortNodes(root: Node): Node[] {
  const order: Node[] = [];
  const seen = new Set<Node>();
  // Iterative depth-first search (graphs of deep models overflow a recursive one).
  const stack: [Node, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.edges.length) {
      top[1]++;
      const next = node.edges[i]?.node;
      if (next && !seen.has(next)) { seen.add(next); stack.push([next, 0]); }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order.reverse();
}

/** Brings a gradient to the dtype of the tensor it belongs to (the engine owns g; a cast replaces it). */
function conform(g: Tensor, edge: Edge, op: string): Tensor {
  if (g.size !== sizeOf(edge.shape)) {
    throw new ShapeError(`${op} backward: gradient ${fmtShape(g.shape)} does not match input ${fmtShape(edge.shape)}`);
  }
  if (g.dtype === edge.dtype) return g;
  const c = keep(to(g, edge.dtype));
  g.dispose();
  return c;
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.grad && !leaf.grad.isDisposed) {
    // In place, so a gradient that lives in a shared buffer (an optimizer's flat gradient store) stays there.
    leaf.backend.binary('add',
      { view: leaf.grad.view, offset: 0, strides: [1] }, { view: g.view, offset: 0, strides: [1] }, leaf.grad.view, [g.size]);
    g.dispose();
  } else if (g.shape.length === leaf.shape.length) {
    leaf.grad = g;
  } else {
    leaf.grad = keep(g.reshape([...leaf.shape]));
    g.dispose();
  }
}

/** The engine's own copy of the seed gradient (ones for a scalar root). */
function seedGradient(root: Tensor, grad?: Tensor): Tensor {
  if (!grad) return keep(onesLike(root));
  if (grad.size !== root.size) throw new ShapeError(`backward: gradient ${fmtShape(grad.shape)} does not match ${root.describe()}`);
  return keep(grad.dtype === root.dtype ? grad.clone() : to(grad, root.dtype));
}

export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) {
    throw new GradError(`backward: ${root.describe()} does not require grad (no input of the computation had requiresGrad set, or it ran under noGrad)`);
  }
  if (!grad && root.size !== 1) {
    throw new GradError(`backward: ${root.describe()} is not a scalar; pass the output gradient explicitly`);
  }
  withGradMode(false, () => withoutAutocast(() => {
    const seed = seedGradient(root, grad);
    if (!root.node) return accumulateLeaf(root, seed);
    // Every gradient in `pending` is owned by the engine and freed once its node has run.
    const pending = new Map<Node, Tensor>([[root.node, seed]]);
    for (const node of sortNodes(root.node)) {
      const gy = pending.get(node);
      if (!gy) continue;
      pending.delete(node);
      const inputGrads = tidy(() => node.apply(gy));
      // One tensor may come back for several inputs (add(x, x)), or be gy itself (identity ops):
      // give each consumer its own before any of them consumes (and frees) one.
      const handedOn = new Set<Tensor>();
      const grads = node.edges.map((edge, i) => {
        const g = inputGrads[i];
        if (!edge || !g) return null;
        // A consumer of another dtype gets its own tensor from the cast that conform would make: no copy first.
        if (handedOn.has(g)) return keep(g.dtype === edge.dtype ? g.clone() : to(g, edge.dtype));
        handedOn.add(g);
        return keep(g);
      });
      // Gradients computed for inputs that take none (an edge of null) are dropped here, not leaked.
      for (const g of inputGrads) if (g && g !== gy && !handedOn.has(g)) g.dispose();
      node.edges.forEach((edge, i) => {
        if (!edge || !grads[i]) return;
        let g = conform(grads[i]!, edge, node.op);
        if (edge.leaf) return accumulateLeaf(edge.leaf, g);
        const prev = pending.get(edge.node!);
        if (prev) {
          const sum = keep(add(prev, g));
          prev.dispose();
          g.dispose();
          g = sum;
        }
        pending.set(edge.node!, g);
      });
      if (!handedOn.has(gy)) gy.dispose();
    }
  }));
}

setBackwardHook(backward);

/** Runs fn without recording gradients (like torch.no_grad()). fn must be synchronous. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs fn with gradient recording on, e.g. inside a noGrad region. */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}
