/**
 * Which tree digest a warm boot may check a cached tree against: the one place that
 * decides. Today the metadata's `bundle.treeDigest` (the registry's, computed at upload)
 * is trusted as far as `bundle.hash` is: both come from the same document. A VM with a
 * trust root (signed bundles) must use a digest only when the signed statement covers it;
 * that check belongs here. Undefined means "no trusted digest": the tree is checked
 * against the verified archive instead (tree.ts, linkFromTree).
 */
export type BundleRef = { hash: string; treeDigest?: string | undefined };

export function trustedTreeDigest(bundle: BundleRef): string | undefined {
  return bundle.treeDigest;
}
