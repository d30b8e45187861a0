export * from './vocabulary.js';
export * from './names.js';
export * from './api.js';
export * from './metadata.js';
export * from './executions.js';
export * from './releases.js';
export * from './doctor.js';
export * from './signing.js';
