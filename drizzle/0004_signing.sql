CREATE TABLE "tenant_signing_keys" (
	"tenant_id" uuid NOT NULL,
	"key_id" text NOT NULL,
	"public_key" text NOT NULL,
	"delegation" jsonb NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	"revoked_by" text,
	CONSTRAINT "tenant_signing_keys_tenant_id_key_id_pk" PRIMARY KEY("tenant_id","key_id"),
	CONSTRAINT "tenant_signing_keys_key_id_format" CHECK ("tenant_signing_keys"."key_id" ~ '^[0-9a-f]{64}$'),
	CONSTRAINT "tenant_signing_keys_revoked_complete" CHECK (("tenant_signing_keys"."revoked_at" is null) = ("tenant_signing_keys"."revoked_by" is null))
);
--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "signature_policy" text DEFAULT 'off' NOT NULL;--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD COLUMN "signature_warning" text;--> statement-breakpoint
ALTER TABLE "workflow_versions" ADD COLUMN "signature_statement" text;--> statement-breakpoint
ALTER TABLE "workflow_versions" ADD COLUMN "signature" text;--> statement-breakpoint
ALTER TABLE "workflow_versions" ADD COLUMN "signing_key_id" text;--> statement-breakpoint
ALTER TABLE "tenant_signing_keys" ADD CONSTRAINT "tenant_signing_keys_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenants" ADD CONSTRAINT "tenants_signature_policy_known" CHECK ("tenants"."signature_policy" in ('off', 'warn', 'enforce'));--> statement-breakpoint
ALTER TABLE "workflow_versions" ADD CONSTRAINT "workflow_versions_signature_complete" CHECK (("workflow_versions"."signature" is null) = ("workflow_versions"."signature_statement" is null) and ("workflow_versions"."signature" is null) = ("workflow_versions"."signing_key_id" is null));