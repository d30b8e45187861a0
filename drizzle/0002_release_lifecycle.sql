ALTER TABLE "workflow_activations" ALTER COLUMN "to_version_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "bundles" ADD COLUMN "deleted_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "version_reason" text DEFAULT 'active' NOT NULL;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "routing_key" text;--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD COLUMN "kind" text DEFAULT 'activate' NOT NULL;--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD COLUMN "weight" integer;--> statement-breakpoint
ALTER TABLE "workflow_versions" ADD COLUMN "pruned_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "workflows" ADD COLUMN "canary_version_id" uuid;--> statement-breakpoint
ALTER TABLE "workflows" ADD COLUMN "canary_weight" integer;--> statement-breakpoint
ALTER TABLE "workflows" ADD CONSTRAINT "workflows_canary_version_fk" FOREIGN KEY ("id","canary_version_id") REFERENCES "public"."workflow_versions"("workflow_id","id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_version_reason_known" CHECK ("executions"."version_reason" in ('active', 'canary'));--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD CONSTRAINT "workflow_activations_kind_known" CHECK ("workflow_activations"."kind" in ('activate', 'rollback', 'promote', 'canary', 'canary_clear'));--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD CONSTRAINT "workflow_activations_to_present" CHECK (("workflow_activations"."kind" = 'canary_clear') = ("workflow_activations"."to_version_id" is null));--> statement-breakpoint
ALTER TABLE "workflow_activations" ADD CONSTRAINT "workflow_activations_weight" CHECK (("workflow_activations"."kind" = 'canary') = ("workflow_activations"."weight" is not null));--> statement-breakpoint
ALTER TABLE "workflows" ADD CONSTRAINT "workflows_canary_complete" CHECK (("workflows"."canary_version_id" is null) = ("workflows"."canary_weight" is null));--> statement-breakpoint
ALTER TABLE "workflows" ADD CONSTRAINT "workflows_canary_weight_range" CHECK ("workflows"."canary_weight" between 1 and 99);--> statement-breakpoint
ALTER TABLE "workflows" ADD CONSTRAINT "workflows_canary_not_active" CHECK ("workflows"."canary_version_id" is null or "workflows"."canary_version_id" is distinct from "workflows"."active_version_id");