export { renderMetadataFile, renderMmdsListing, startMetadataService, type MetadataService } from './mmds.js';
export {
  runVm,
  spawnWorkflow,
  spawnWorkflows,
  vmEndpoints,
  withExpectedWorkflow,
  type Driver,
  type SpawnManyOptions,
  type SpawnOptions,
  type SpawnOutcome,
  type VmOptions,
} from './spawn.js';
export {
  bootQemuVm,
  createCacheDrive,
  guestForwards,
  QemuVmError,
  type ForwardMode,
  type GuestForward,
  type QemuAccel,
  type QemuVmOptions,
  type QemuVmResult,
  type QemuVmTimings,
} from './qemu/index.js';
