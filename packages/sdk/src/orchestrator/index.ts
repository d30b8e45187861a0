export { renderMetadataFile, renderMmdsListing, startMetadataService, type MetadataService } from './mmds.js';
