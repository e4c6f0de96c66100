// The optional fused ops of Device (addRmsNormLinear, moeRouteExperts) spelled out as the ops they
// stand for: what callers run on a device without them, and what a device with them runs where its
// fused form does not apply.

import type { Device, MoeExpertWeights, MoeRouteParams, NormLinearResult, Tensor } from './device.js';

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

/** moeRoute, then moeExperts with that routing (released): what Device.moeRouteExperts returns. */
export function moeRouteExpertsByParts(
  d: Device,
  x: Tensor,
  routerLogits: Tensor,
  params: MoeRouteParams,
  experts: MoeExpertWeights,
): Tensor {
  const routing = d.moeRoute(routerLogits, params);
  const out = d.moeExperts(x, routing, experts);
  d.release(routing.ids);
  d.release(routing.weights);
  return out;
}
