export {
  isMoeLayer,
  mlaSpec,
  ropeStyle,
  routeParams,
  softmaxScale,
  yarnMscale,
} from './deepseek/config.js';
export type { DeepseekTensorParallelHooks } from './deepseek/model.js';
export {
  createDeepseekModelFromWeights,
  DeepseekModel,
  type DeepseekModelOptions,
  loadDeepseekModel,
} from './deepseek/model.js';
export { DEEPSEEK_V2_LITE_CONFIG, TINY_DEEPSEEK_V3_CONFIG, tinyDeepseekConfig } from './deepseek/presets.js';
export { buildRopeTable, ropeFrequencies } from './deepseek/rope.js';
export {
  ShardedWeightSource,
  shardConfig,
  shardWeights,
  tensorParallelUnsupportedReasons,
  VocabParallelHooks,
} from './deepseek/tensor-parallel.js';
export {
  buildTensorParallelRank,
  type ClosableModel,
  type CreateTensorParallelModelOptions,
  cpuRankRuntime,
  createTensorParallelModel,
  type RankJoin,
  type RankRuntime,
  runTensorParallelWorker,
  TensorParallelModel,
  type TensorParallelPayload,
  type TensorParallelWeights,
  tensorParallelRankHandlers,
} from './deepseek/tensor-parallel-model.js';
export { DummyWeightSource, deepseekWeightManifest, WeightReader } from './deepseek/weights.js';
