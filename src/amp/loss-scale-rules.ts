// GradScaler's two rules, as data for Backend.update: unscaling with the
// non-finite check, and the loss-scale update.

import { add, eq, finite, ge, mul, or, reciprocal, select, sub, type UpdateRule } from '../backend/update-rule.js';

/**
 * Unscaling with PyTorch's non-finite check (_amp_foreach_non_finite_check_and_unscale_):
 * grad *= the correctly rounded float32 reciprocal of the scale; foundInf = 1 when any gradient is inf or NaN.
 */
export const UNSCALE_RULE: UpdateRule = {
  name: 'unscale',
  hypers: [],
  scalars: ['scale', 'foundInf'],
  slots: ['grad'],
  raise: [['foundInf', eq(finite('grad'), 0)]],
  updates: [['grad', mul('grad', reciprocal('scale'))]],
};

const successful = add('growthTracker', 1);
const grows = ge(successful, 'growthInterval');
const grown = mul('scale', 'growthFactor');

/**
 * PyTorch's _amp_update_scale_: on inf/NaN the scale backs off and the tracker
 * resets; otherwise the tracker counts successful steps and, at growthInterval,
 * the scale grows (if the result is finite) and the tracker resets.
 */
export const UPDATE_SCALE_RULE: UpdateRule = {
  name: 'updateScale',
  hypers: ['growthFactor', 'backoffFactor', 'growthInterval'],
  scalars: ['scale', 'growthTracker', 'foundInf'],
  slots: [],
  scalarUpdates: [
    ['scale', select('foundInf', mul('scale', 'backoffFactor'), select(grows, select(finite(grown), grown, 'scale'), 'scale'))],
    ['growthTracker', select('foundInf', 0, select(grows, 0, successful))],
  ],
  updates: [],
};

const backsOff = select('foundInf', ge(1, 'hysteresisLeft'), 0);
const backedOff = mul('scale', 'backoffFactor');
const belowMin = eq(ge(backedOff, 'minScale'), 0);

/**
 * PyTorch's rule with two guards (DeepSpeed's): with `hysteresis` N the scale
 * backs off only at the Nth consecutive overflow (a finite step restores the
 * count), and it never falls below `minScale`: a back-off that would sets
 * `collapsed` instead and leaves the scale where it is. With hysteresis 1 and
 * minScale 0 it is UPDATE_SCALE_RULE.
 */
export const GUARDED_UPDATE_SCALE_RULE: UpdateRule = {
  name: 'updateScaleGuarded',
  hypers: ['growthFactor', 'backoffFactor', 'growthInterval', 'hysteresis', 'minScale'],
  scalars: ['scale', 'growthTracker', 'foundInf', 'hysteresisLeft', 'collapsed'],
  slots: [],
  // In order: each reads the values before its own update, so collapsed and scale come before hysteresisLeft.
  scalarUpdates: [
    ['collapsed', or('collapsed', select(backsOff, belowMin, 0))],
    ['scale', select(backsOff, select(belowMin, 'scale', backedOff), select('foundInf', 'scale', select(grows, select(finite(grown), grown, 'scale'), 'scale')))],
    ['growthTracker', select('foundInf', 0, select(grows, 0, successful))],
    ['hysteresisLeft', select('foundInf', select(backsOff, 'hysteresis', sub('hysteresisLeft', 1)), 'hysteresis')],
  ],
  updates: [],
};
