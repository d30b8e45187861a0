/** The agent's check of a fetched archive file before the walk (@swarm/sdk/bundle-rules' walkArchive) parses it. */
import fs from 'node:fs/promises';

export async function isGzip(file: string): Promise<boolean> {
  const handle = await fs.open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b;
  } finally {
    await handle.close();
  }
}
