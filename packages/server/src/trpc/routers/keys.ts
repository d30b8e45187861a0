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
import { type ProcedureTable, mutation, query } from '../procedure.js';

/** Signed bundles (docs/signing.md): tenants' signing keys, signature policy, signing a pushed version. */
export const keysProcedures = (deps: Deps) =>
  ({
    add: mutation({
      input: addSigningKeyInput,
      output: z.object({ key: signingKey, created: z.boolean(), renewed: z.boolean() }),
      run: ({ principal, input }) => addSigningKey(deps, principal, input),
    }),
    list: query({
      input: tenantInput,
      output: z.array(signingKey),
      run: ({ principal, input }) => listSigningKeys(deps, principal, input),
    }),
    revoke: mutation({
      input: revokeSigningKeyInput,
      output: signingKey,
      run: ({ principal, input }) => revokeKey(deps, principal, input),
    }),
    policy: query({
      input: tenantInput,
      output: signaturePolicyOutput,
      run: ({ principal, input }) => getSignaturePolicy(deps, principal, input),
    }),
    setPolicy: mutation({
      input: setSignaturePolicyInput,
      output: signaturePolicyOutput,
      run: ({ principal, input }) => changeSignaturePolicy(deps, principal, input),
    }),
    sign: mutation({
      input: signVersionInput,
      output: workflowVersion,
      run: ({ principal, input }) => signVersion(deps, principal, input),
    }),
  }) satisfies ProcedureTable;
