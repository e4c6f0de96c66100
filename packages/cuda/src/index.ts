export { type CudaAvailability, type CudaDeviceInfo, cudaAvailability, requireAddon } from './addon.js';
