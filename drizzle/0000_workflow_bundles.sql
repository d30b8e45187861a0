CREATE TABLE "api_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"scope" text NOT NULL,
	"tenant_id" uuid,
	"token_hash" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "api_tokens_token_hash_unique" UNIQUE("token_hash"),
	CONSTRAINT "api_tokens_scope_known" CHECK ("api_tokens"."scope" in ('admin', 'orchestrator', 'tenant')),
	CONSTRAINT "api_tokens_tenant_scope" CHECK (("api_tokens"."scope" = 'tenant') = ("api_tokens"."tenant_id" is not null)),
	CONSTRAINT "api_tokens_hash_format" CHECK ("api_tokens"."token_hash" ~ '^[0-9a-f]{64}$')
);
--> statement-breakpoint
CREATE TABLE "bundles" (
	"hash" text PRIMARY KEY NOT NULL,
	"size" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "bundles_hash_format" CHECK ("bundles"."hash" ~ '^[0-9a-f]{64}$'),
	CONSTRAINT "bundles_size_nonnegative" CHECK ("bundles"."size" >= 0)
);
--> statement-breakpoint
CREATE TABLE "execution_events" (
	"execution_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"type" text NOT NULL,
	"data" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "execution_events_execution_id_seq_pk" PRIMARY KEY("execution_id","seq"),
	CONSTRAINT "execution_events_seq_nonnegative" CHECK ("execution_events"."seq" >= 0)
);
--> statement-breakpoint
CREATE TABLE "executions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workflow_id" uuid NOT NULL,
	"version_id" uuid NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"exit_code" integer,
	"failure_reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	CONSTRAINT "executions_status_known" CHECK ("executions"."status" in ('pending', 'booting', 'running', 'succeeded', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "tenants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"slug" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tenants_slug_unique" UNIQUE("slug"),
	CONSTRAINT "tenants_slug_format" CHECK ("tenants"."slug" ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$' and length("tenants"."slug") <= 63)
);
--> statement-breakpoint
CREATE TABLE "workflow_activations" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workflow_id" uuid NOT NULL,
	"from_version_id" uuid,
	"to_version_id" uuid NOT NULL,
	"actor" text NOT NULL,
	"message" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "workflow_versions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workflow_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"bundle_hash" text NOT NULL,
	"message" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "workflow_versions_workflow_version_unique" UNIQUE("workflow_id","version"),
	CONSTRAINT "workflow_versions_workflow_id_unique" UNIQUE("workflow_id","id"),
	CONSTRAINT "workflow_versions_version_positive" CHECK ("workflow_versions"."version" >= 1),
	CONSTRAINT "workflow_versions_hash_format" CHECK ("workflow_versions"."bundle_hash" ~ '^[0-9a-f]{64}$')
);
--> statement-breakpoint
CREATE TABLE "workflows" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"name" text NOT NULL,
	"active_version_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "workflows_tenant_name_unique" UNIQUE("tenant_id","name"),
	CONSTRAINT "workflows_name_format" CHECK ("workflows"."name" ~ '^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$' and length("workflows"."name") <= 100)
);
--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "execution_events" ADD CONSTRAINT "execution_events_execution_id_executions_id_fk" FOREIGN KEY ("execution_id") REFERENCES "public"."executions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_workflow_id_workflows_id_fk" FOREIGN KEY ("workflow_id") REFERENCES "public"."workflows"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_version_id_workflow_versions_id_fk" FOREIGN KEY ("version_id") REFERENCES "public"."workflow_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_version_of_workflow_fk" FOREIGN KEY ("workflow_id","version_id") REFERENCES "public"."workflow_versions"("workflow_id","id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD CONSTRAINT "workflow_activations_workflow_id_workflows_id_fk" FOREIGN KEY ("workflow_id") REFERENCES "public"."workflows"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD CONSTRAINT "workflow_activations_from_version_id_workflow_versions_id_fk" FOREIGN KEY ("from_version_id") REFERENCES "public"."workflow_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD CONSTRAINT "workflow_activations_to_version_id_workflow_versions_id_fk" FOREIGN KEY ("to_version_id") REFERENCES "public"."workflow_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workflow_versions" ADD CONSTRAINT "workflow_versions_workflow_id_workflows_id_fk" FOREIGN KEY ("workflow_id") REFERENCES "public"."workflows"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workflow_versions" ADD CONSTRAINT "workflow_versions_bundle_hash_bundles_hash_fk" FOREIGN KEY ("bundle_hash") REFERENCES "public"."bundles"("hash") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workflows" ADD CONSTRAINT "workflows_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workflows" ADD CONSTRAINT "workflows_active_version_fk" FOREIGN KEY ("id","active_version_id") REFERENCES "public"."workflow_versions"("workflow_id","id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "executions_workflow_created_idx" ON "executions" USING btree ("workflow_id","created_at");--> statement-breakpoint
CREATE INDEX "workflow_activations_workflow_idx" ON "workflow_activations" USING btree ("workflow_id","created_at");--> statement-breakpoint
CREATE INDEX "workflow_versions_bundle_hash_idx" ON "workflow_versions" USING btree ("bundle_hash");--> statement-breakpoint
CREATE VIEW "public"."active_workflow_versions" AS (select "workflows"."id" as "workflow_id", "workflows"."tenant_id" as "tenant_id", "workflows"."name" as "workflow_name", "workflow_versions"."id" as "version_id", "workflow_versions"."version" as "version", "workflow_versions"."bundle_hash" as "bundle_hash", "bundles"."size" as "size" from "workflows" inner join "workflow_versions" on "workflow_versions"."id" = "workflows"."active_version_id" inner join "bundles" on "bundles"."hash" = "workflow_versions"."bundle_hash");