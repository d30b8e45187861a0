export { renderMetadataFile, renderMmdsListing, startMetadataService, type MetadataService } from './mmds.js';
export { spawnWorkflow, type Driver, type SpawnOptions, type SpawnOutcome } from './spawn.js';
export { bootQemuVm, createCacheDrive, guestForwards, QemuVmError, type ForwardMode, type GuestForward, type QemuAccel, type QemuVmOptions, type QemuVmResult, type QemuVmTimings } from './qemu.js';
