export {
  isMoeLayer,
  mlaSpec,
  ropeStyle,
  routeParams,
  softmaxScale,
  yarnMscale,
} from './deepseek/config.js';
export {
  createDeepseekModelFromWeights,
  DeepseekModel,
  type DeepseekModelOptions,
  loadDeepseekModel,
} from './deepseek/model.js';
export { TINY_DEEPSEEK_V3_CONFIG, tinyDeepseekConfig } from './deepseek/presets.js';
export { buildRopeTable, ropeFrequencies } from './deepseek/rope.js';
export { DummyWeightSource, deepseekWeightManifest, WeightReader } from './deepseek/weights.js';
