export * from './names.js';
export * from './api.js';
