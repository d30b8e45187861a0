/** Migrations under concurrency, and the constraints that guard the data whatever the services do. */
import fs from 'node:fs/promises';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateDatabase, migrationsFolder } from '../packages/server/src/db/migrate.js';
import { createTestDatabase, startTestRegistry } from './support/registry.js';

const journalEntries = async () =>
  (JSON.parse(await fs.readFile(path.join(migrationsFolder, 'meta/_journal.json'), 'utf8')) as { entries: unknown[] }).entries.length;

describe('migrations', () => {
  it('apply exactly once when six migrators race on a fresh database', async () => {
    const url = await createTestDatabase();
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => migrateDatabase(url)));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    const [row] = await sql`select count(*)::int as count from drizzle.__drizzle_migrations`;
    expect(row!.count).toBe(await journalEntries());
    const tables = await sql`select table_name from information_schema.tables where table_schema = 'public' order by 1`;
    expect(tables.map((t) => t.table_name)).toEqual([
      'active_workflow_versions',
      'api_tokens',
      'bundles',
      'execution_events',
      'executions',
      'tenant_signing_keys',
      'tenants',
      'workflow_activations',
      'workflow_versions',
      'workflows',
    ]);
    await sql.end();
  });

  it('let three registries start at once on one fresh database', async () => {
    const url = await createTestDatabase();
    const regs = await Promise.all([1, 2, 3].map(() => startTestRegistry({ storage: 'fs', databaseUrl: url })));
    try {
      for (const r of regs) expect((await r.fetch('/healthz')).status).toBe(200);
      const c = regs[0]!.client(regs[0]!.adminToken);
      await c.call(() => c.trpc.tenants.create.mutate({ slug: 'shared' }));
      const other = regs[2]!.client(regs[2]!.adminToken);
      expect((await other.call(() => other.trpc.tenants.list.query())).map((t) => t.slug)).toEqual(['shared']);
    } finally {
      await Promise.all(regs.map((r) => r.close()));
    }
  });
});

describe('constraints guard the data', () => {
  let sql: postgres.Sql;
  let ids: { tenant: string; wfA: string; wfB: string; versionB: string };
  const hash = (c: string) => c.repeat(64);
  beforeAll(async () => {
    const url = await createTestDatabase();
    await migrateDatabase(url);
    sql = postgres(url, { max: 1, onnotice: () => {} });
    const [t] = await sql`insert into tenants (slug) values ('guard') returning id`;
    const [a] = await sql`insert into workflows (tenant_id, name) values (${t!.id}, 'a') returning id`;
    const [b] = await sql`insert into workflows (tenant_id, name) values (${t!.id}, 'b') returning id`;
    await sql`insert into bundles (hash, size) values (${hash('a')}, 10)`;
    const [v] =
      await sql`insert into workflow_versions (workflow_id, version, bundle_hash, created_by) values (${b!.id}, 1, ${hash('a')}, 'test') returning id`;
    ids = { tenant: t!.id, wfA: a!.id, wfB: b!.id, versionB: v!.id };
  });
  afterAll(() => sql?.end());

  const rejects = (q: Promise<unknown>, constraint: RegExp) =>
    expect(q).rejects.toMatchObject({ constraint_name: expect.stringMatching(constraint) });

  it('refuses a malformed bundle hash', () => rejects(sql`insert into bundles (hash, size) values ('ABC', 1)`, /bundles_hash_format/));
  it('refuses a negative bundle size', () =>
    rejects(sql`insert into bundles (hash, size) values (${hash('b')}, -1)`, /bundles_size_nonnegative/));
  it('refuses a duplicate workflow name in a tenant', () =>
    rejects(sql`insert into workflows (tenant_id, name) values (${ids.tenant}, 'a')`, /workflows_tenant_name_unique/));
  it('refuses a malformed workflow name', () =>
    rejects(sql`insert into workflows (tenant_id, name) values (${ids.tenant}, 'Bad Name')`, /workflows_name_format/));
  it('refuses a duplicate version number', () =>
    rejects(
      sql`insert into workflow_versions (workflow_id, version, bundle_hash, created_by) values (${ids.wfB}, 1, ${hash('a')}, 'test')`,
      /workflow_versions_workflow_version_unique/,
    ));
  it('refuses version 0', () =>
    rejects(
      sql`insert into workflow_versions (workflow_id, version, bundle_hash, created_by) values (${ids.wfB}, 0, ${hash('a')}, 'test')`,
      /workflow_versions_version_positive/,
    ));
  it('refuses a version whose bundle is unknown', () =>
    rejects(
      sql`insert into workflow_versions (workflow_id, version, bundle_hash, created_by) values (${ids.wfB}, 2, ${hash('c')}, 'test')`,
      /bundle_hash/,
    ));
  it("refuses to activate another workflow's version", () =>
    rejects(sql`update workflows set active_version_id = ${ids.versionB} where id = ${ids.wfA}`, /workflows_active_version_fk/));
  it('refuses a tenant token without a tenant', () =>
    rejects(
      sql`insert into api_tokens (name, scope, token_hash, created_by) values ('t', 'tenant', ${hash('d')}, 'x')`,
      /api_tokens_tenant_scope/,
    ));
  it('refuses an unknown signature policy', () =>
    rejects(sql`update tenants set signature_policy = 'sometimes' where id = ${ids.tenant}`, /tenants_signature_policy_known/));
  it('refuses a signature without its statement and key id', () =>
    rejects(sql`update workflow_versions set signature = 'AAAA' where id = ${ids.versionB}`, /workflow_versions_signature_complete/));
  it('refuses a malformed signing key id', () =>
    rejects(
      sql`insert into tenant_signing_keys (tenant_id, key_id, public_key, delegation, not_after, created_by)
          values (${ids.tenant}, 'KEY', 'AAAA', '{}', now(), 'x')`,
      /tenant_signing_keys_key_id_format/,
    ));
  it('refuses a revocation without who revoked', () =>
    rejects(
      sql`insert into tenant_signing_keys (tenant_id, key_id, public_key, delegation, not_after, created_by, revoked_at)
          values (${ids.tenant}, ${hash('e')}, 'AAAA', '{}', now(), 'x', now())`,
      /tenant_signing_keys_revoked_complete/,
    ));
  it('shows an active version in the view', async () => {
    await sql`update workflows set active_version_id = ${ids.versionB} where id = ${ids.wfB}`;
    const rows = await sql`select workflow_id, version, bundle_hash, size from active_workflow_versions`;
    expect(rows).toEqual([{ workflow_id: ids.wfB, version: 1, bundle_hash: hash('a'), size: '10' }]);
  });
});
