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

/** Checks a gradient's size and brings it to the dtype of the tensor it belongs to. */
function conform(g: Tensor, edge: Edge, op: string): Tensor {
  if (g.size !== sizeOf(edge.shape)) {
    throw new ShapeError(`${op} backward: gradient ${fmtShape(g.shape)} does not match input ${fmtShape(edge.shape)}`);
  }
  return g.dtype === edge.dtype ? g : to(g, edge.dtype);
}

/**
 * Adds g into leaf.grad. Returns true when g itself became the gradient (the
 * caller no longer owns it). A gradient made for a leaf that had none is
 * recorded in `created`, so that a backward that fails can take it back.
 */
function accumulateLeaf(leaf: Tensor, g: Tensor, created: Set<Tensor>): boolean {
  if (leaf.grad && !leaf.grad.isDisposed) {
    // In place, so a gradient that lives in a shared buffer (an optimizer's flat gradient store) stays there.
    leaf.backend.binary('add',
      { view: leaf.grad.storageView, offset: 0, strides: [1] }, { view: g.storageView, offset: 0, strides: [1] }, leaf.grad.storageView, [g.size]);
    return false;
  }
  leaf.grad = keep(g.shape.length === leaf.shape.length ? g : g.reshape([...leaf.shape]));
  created.add(leaf);
  return leaf.grad === g;
}

/** The engine's own copy of the seed gradient (ones for a scalar root). */
function seedGradient(root: Tensor, grad?: Tensor): Tensor {
  if (!grad) return keep(onesLike(root));
  if (grad.size !== root.size) throw new ShapeError(`backward: gradient ${fmtShape(grad.shape)} does not match ${root.describe()}`);
  return keep(grad.dtype === root.dtype ? grad.clone() : to(grad, root.dtype));
}

/**
 * Accumulates d(root)/d(leaf) into every leaf's `.grad`. If a backward formula
 * throws, every tensor this pass made is released before the error propagates,
 * and leaves that had no gradient before are left without one (gradients that
 * already existed may hold part of this pass's contribution, as in PyTorch).
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) {
    throw new GradError(`backward: ${root.describe()} does not require grad (no input of the computation had requiresGrad set, or it ran under noGrad)`);
  }
  if (!grad && root.size !== 1) {
    throw new GradError(`backward: ${root.describe()} is not a scalar; pass the output gradient explicitly`);
  }
  // Gradients owned by the engine: each is freed once its node has run, or when the pass fails.
  const pending = new Map<Node, Tensor>();
  const created = new Set<Tensor>();
  try {
    withGradMode(false, () => withoutAutocast(() => walk(root, seedGradient(root, grad), pending, created)));
  } catch (e) {
    for (const g of pending.values()) g.dispose();
    for (const leaf of created) {
      leaf.grad?.dispose();
      leaf.grad = null;
    }
    throw e;
  }
}

function walk(root: Tensor, seed: Tensor, pending: Map<Node, Tensor>, created: Set<Tensor>): void {
  if (!root.node) {
    if (!accumulateLeaf(root, seed, created)) seed.dispose();
    return;
  }
  pending.set(root.node, seed);
  for (const node of sortNodes(root.node)) {
    const gy = pending.get(node);
    if (!gy) continue;
    // What this node's step makes is released at its end (or when it throws), except the gradients
    // handed on; gy stays in `pending` until the step has succeeded, so a failure releases it too.
    tidy(() => {
      const inputGrads = node.apply(gy);
      // One tensor may come back for several inputs (add(x, x)): every further consumer gets its own
      // copy, made by the cast to its dtype where it needs one.
      const taken = new Set<Tensor>();
      const grads = node.edges.map((edge, i) => {
        const g = inputGrads[i];
        if (!edge || !g) return null;
        const own = taken.has(g) ? (g.dtype === edge.dtype ? g.clone() : to(g, edge.dtype)) : g;
        taken.add(g);
        return conform(own, edge, node.op);
      });
      const owned = new Set<Tensor>();
      node.edges.forEach((edge, i) => {
        const g = grads[i];
        if (!edge || !g) return;
        if (edge.leaf) {
          if (accumulateLeaf(edge.leaf, g, created)) owned.add(g);
          return;
        }
        const prev = pending.get(edge.node!);
        const next = prev ? add(prev, g) : g;
        pending.set(edge.node!, keep(next));
        owned.add(next);
        prev?.dispose();
      });
      pending.delete(node);
      // gy was made outside this step (the tidy does not own it): free it unless it was handed on.
      if (!owned.has(gy)) gy.dispose();
    });
  }
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
