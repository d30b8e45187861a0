/**
 * Which tree digest a warm boot may check a cached tree against: the one place that
 * decides. Without a trust root, the metadata's `bundle.treeDigest` (the registry's,
 * computed at upload) is trusted as far as `bundle.hash` is: both come from the same
 * document. With a trust root (signed bundles, docs/signing.md), only the digest the signed
 * statement covers counts (verifyBundle has already refused a metadata digest that differs
 * from it); a statement without one means no trusted digest. Undefined means "no trusted
 * digest": the tree is checked against the verified archive instead (tree.ts, linkFromTree).
 */
export type BundleRef = { hash: string; treeDigest?: string | undefined };

/** `signed`: the statement that verified under the VM's trust root, or null when the VM has none. */
export function trustedTreeDigest(bundle: BundleRef, signed: { treeDigest?: string | undefined } | null): string | undefined {
  return signed ? signed.treeDigest : bundle.treeDigest;
}
