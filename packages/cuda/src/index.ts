export { type CudaAvailability, type CudaDeviceInfo, cudaAvailability, requireAddon } from './addon.js';
export {
  CudaDevice,
  type CudaDeviceOptions,
  type GpuSamplingParams,
  type GpuSamplingResult,
  type MlaCacheWrite,
  type PendingGpuSample,
} from './cuda-device.js';
export { CudaSampler, MAX_GPU_TOP_LOGPROBS } from './cuda-sampler.js';
export { GpuDummyWeightSource } from './dummy-weights.js';
export {
  decodeGraphLadder,
  graphBatchFor,
  graphBatchSizes,
  isCudaContextLost,
  MAX_DECODE_GRAPH_BATCH,
} from './graph-ladder.js';
export type { KernelTimeline, KernelTimelineLog, NativeMemStats } from './native.js';
export { type AddonAvailability, type AddonProbe, NativeAddonLoader } from './native-addon.js';
export {
  abortNcclGroup,
  createNcclGroupInit,
  NCCL_DTYPE,
  type NcclAvailability,
  type NcclGroupInit,
  NcclProcessGroup,
  type NcclProcessGroupOptions,
  ncclAvailability,
  ncclLibraryCandidates,
  ncclUniqueId,
} from './nccl.js';
export {
  loadSafetensorsToDevice,
  readSafetensorsHeader,
  type SafetensorsEntry,
} from './safetensors-device.js';
export { type CudaDType, CudaTensor } from './tensor.js';
