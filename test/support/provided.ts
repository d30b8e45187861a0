/** What the global setup hands every test file (see global-setup.ts). */
declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    s3: { endpoint: string; accessKey: string; secretKey: string; region: string; logFile: string | null };
  }
}
export {};
