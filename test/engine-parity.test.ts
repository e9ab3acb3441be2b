// Every op, forward and backward: native equals reference on random shapes, odd sizes included.
import { describe, it } from 'node:test';
import { NATIVE_SKIP, assertClose, native, reference, runWithGrads } from './helpers.js';
import { OP_CASES as cases, caseInputs } from './op-cases.js';

describe('native backend equals reference', { skip: NATIVE_SKIP }, () => {
  for (const c of cases) {
    it(c.name, () => {
      const inputs = caseInputs(c);
      const r = runWithGrads(reference, inputs, c.fn);
      const n = runWithGrads(native!, inputs, c.fn, r.probe);
      assertClose(n.y, r.y, 1e-4, 1e-4, `${c.name} forward`);
      n.grads.forEach((g, i) => assertClose(g, r.grads[i], 1e-4, 1e-4, `${c.name} gradient of input ${i}`));
    });
  }
});
