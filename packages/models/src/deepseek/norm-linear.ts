// The norm before a Linear, as one op where the device has it (Device.addRmsNormLinear: one launch on
// a GPU at decode sizes), else as the two ops it stands for.

import { addRmsNormLinearByParts, type Device, type NormLinearResult, type Tensor } from '@flashserve/core';

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
  return d.addRmsNormLinear !== undefined
    ? d.addRmsNormLinear(x, residual, normWeight, eps, w, bias, keepNormed)
    : addRmsNormLinearByParts(d, x, residual, normWeight, eps, w, bias, keepNormed);
}
