// Device.addRmsNormLinear spelled out as the ops it stands for: what callers run on a device without
// the fused op, and what a device with it runs where its fused form does not apply.

import type { Device, NormLinearResult, Tensor } from './device.js';

/** addRmsNorm(x, residual) (rmsNorm(x) when residual is undefined), then linear(normed, w, bias); the
 * result as Device.addRmsNormLinear returns it. */
export function addRmsNormLinearByParts(
  d: Device,
  x: Tensor,
  residual: Tensor | undefined,
  normWeight: Tensor,
  eps: number,
  w: Tensor,
  bias?: Tensor,
  keepNormed = false,
): NormLinearResult {
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
