ALTER TABLE "bundles" ADD COLUMN "tree_digest" text;--> statement-breakpoint
ALTER TABLE "bundles" ADD CONSTRAINT "bundles_tree_digest_format" CHECK ("bundles"."tree_digest" ~ '^[0-9a-f]{64}$');