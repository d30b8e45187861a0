import {
  addSigningKeyInput,
  revokeSigningKeyInput,
  setSignaturePolicyInput,
  signVersionInput,
  signaturePolicyOutput,
  signingKey,
  tenantInput,
  workflowVersion,
} from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { addSigningKey, changeSignaturePolicy, getSignaturePolicy, listSigningKeys, revokeKey } from '../../services/signing.js';
import { signVersion } from '../../services/versions.js';
import { authedProcedure, router } from '../init.js';

/** Signed bundles (docs/signing.md): tenants' signing keys, signature policy, signing a pushed version. */
export const keysRouter = (deps: Deps) =>
  router({
    add: authedProcedure
      .input(addSigningKeyInput)
      .output(z.object({ key: signingKey, created: z.boolean(), renewed: z.boolean() }))
      .mutation(({ ctx, input }) => addSigningKey(deps, ctx.principal, input)),
    list: authedProcedure
      .input(tenantInput)
      .output(z.array(signingKey))
      .query(({ ctx, input }) => listSigningKeys(deps, ctx.principal, input)),
    revoke: authedProcedure
      .input(revokeSigningKeyInput)
      .output(signingKey)
      .mutation(({ ctx, input }) => revokeKey(deps, ctx.principal, input)),
    policy: authedProcedure
      .input(tenantInput)
      .output(signaturePolicyOutput)
      .query(({ ctx, input }) => getSignaturePolicy(deps, ctx.principal, input)),
    setPolicy: authedProcedure
      .input(setSignaturePolicyInput)
      .output(signaturePolicyOutput)
      .mutation(({ ctx, input }) => changeSignaturePolicy(deps, ctx.principal, input)),
    sign: authedProcedure
      .input(signVersionInput)
      .output(workflowVersion)
      .mutation(({ ctx, input }) => signVersion(deps, ctx.principal, input)),
  });
