export {
  isMoeLayer,
  mlaSpec,
  routeParams,
  ropeStyle,
  softmaxScale,
  yarnMscale,
} from './deepseek/config.js';
export {
  createDeepseekModelFromWeights,
  DeepseekModel,
  type DeepseekModelOptions,
  loadDeepseekModel,
} from './deepseek/model.js';
export { buildRopeTable, ropeFrequencies } from './deepseek/rope.js';
export { DummyWeightSource, deepseekWeightManifest, WeightReader } from './deepseek/weights.js';
