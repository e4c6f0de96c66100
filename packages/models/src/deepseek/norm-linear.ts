// The norm before a Linear, as one op where the device has it (Device.addRmsNormLinear: one launch on
// a GPU at decode sizes), else as the two ops it stands for.

import type { Device, NormLinearResult, Tensor } from '@flashserve/core';

/** addRmsNorm(x, residual) (rmsNorm(x) when residual is undefined) followed by linear(normed, w, bias);
 * see Device.addRmsNormLinear for what comes back. */
export function addRmsNormLinear(
  d: Device,
  x: Tensor,
  residual: Tensor | undefined,
  normWeight: Tensor,
  eps: number,
  w: Tensor,
  bias?: Tensor,
  keepNormed = false,
): NormLinearResult {
  if (d.addRmsNormLinear !== undefined) {
    return d.addRmsNormLinear(x, residual, normWeight, eps, w, bias, keepNormed);
  }
  let normed: Tensor;
  let sum: Tensor | undefined;
  if (residual === undefined) {
    normed = d.rmsNorm(x, normWeight, eps);
  } else {
    const r = d.addRmsNorm(x, residual, normWeight, eps);
    normed = r.out;
    sum = r.residual;
  }
  const out = d.linear(normed, w, bias);
  if (!keepNormed) d.release(normed);
  return { out, residual: sum, normed: keepNormed ? normed : undefined };
}
