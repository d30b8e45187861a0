export { loadConfig, type Config } from './config.js';
export { startRegistry, type RunningRegistry } from './registry.js';
export type { AppRouter } from './trpc/router.js';
