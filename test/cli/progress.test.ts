import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StatusLine } from '../../src/cli/progress.js';

function stream(isTTY: boolean, columns = 40) {
  const out = { text: '', isTTY, columns, write: (s: string) => { out.text += s; } };
  return out;
}

test('on a terminal the status line is rewritten in place with \\r, cut to the width, and lines print above it', () => {
  const s = stream(true);
  const line = new StatusLine(s);
  assert.equal(line.live, true);
  line.update('step 1/10 | loss 5.5000');
  line.update('step 2/10 | loss 5.2000 | a very long tail that will not fit');
  line.print('step 2: val loss 5.1');
  line.finish();
  assert.equal(s.text,
    '\r\x1b[Kstep 1/10 | loss 5.5000'
    + '\r\x1b[Kstep 2/10 | loss 5.2000 | a very long t'
    + '\r\x1b[Kstep 2: val loss 5.1\nstep 2/10 | loss 5.2000 | a very long t'
    + '\n');
});

test('elsewhere there is no live line: only whole lines, no control characters', () => {
  const s = stream(false);
  const line = new StatusLine(s);
  line.update('step 1/10');
  line.print('step 1: val loss 5.1');
  line.finish();
  assert.equal(s.text, 'step 1: val loss 5.1\n');
});
