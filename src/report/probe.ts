// Hooks for looking inside a step, installed only while someone looks: a
// forward hook on every submodule of one model instance, and an identity op
// whose backward shows the gradient passing through it. When they are not
// installed nothing of them runs, so they cost nothing.

import type { Module } from '../nn/module.js';
import { Tensor, record } from '../tensor/tensor.js';

/** Called with a submodule's dotted path and its forward output; returns the output to pass on. */
export type ForwardHook = (path: string, output: Tensor) => Tensor;

type Forward = (...args: unknown[]) => unknown;

/**
 * Wraps `forward` of every submodule of `model` (this instance only; the
 * classes are untouched) so that `hook` sees each tensor output, in forward
 * order. Returns the function that removes the hooks.
 */
export function installForwardHooks(model: Module, hook: ForwardHook): () => void {
  const wrapped: { m: Module; previous: Forward; own: boolean; wrapper: Forward }[] = [];
  let active = true;
  for (const [path, m] of model.namedModules()) {
    const target = m as unknown as { forward?: Forward };
    if (path === '' || typeof target.forward !== 'function') continue;
    // Hooks stack: another observer's wrapper stays in place under this one.
    const previous = target.forward, own = Object.hasOwn(target, 'forward');
    const wrapper = function (this: unknown, ...args: unknown[]) {
      const out = previous.apply(m, args);
      // A module that hands its input on unchanged (dropout in eval mode) adds nothing to look at.
      return active && out instanceof Tensor && out !== args[0] ? hook(path, out) : out;
    };
    target.forward = wrapper;
    wrapped.push({ m, previous, own, wrapper });
  }
  return () => {
    active = false;
    for (const { m, previous, own, wrapper } of wrapped) {
      const target = m as unknown as { forward?: Forward };
      // Unwrapped only when nothing was stacked on top since; otherwise it stays as a pass-through.
      if (target.forward !== wrapper) continue;
      if (own) target.forward = previous;
      else delete target.forward;
    }
  };
}

/**
 * x, unchanged, with a backward that calls `onGradient` with the gradient
 * flowing back into x (owned by autograd: read it or compute from it, do not
 * keep it). Without a gradient to record, x itself.
 */
export function tapGradient(x: Tensor, onGradient: (g: Tensor) => void): Tensor {
  if (!x.requiresGrad) return x;
  return record(x.detach(), 'gradient-tap', [x], [], (gy) => {
    onGradient(gy);
    return [gy];
  });
}
