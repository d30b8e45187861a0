ALTER TABLE "executions" ADD COLUMN "agent_token_hash" text;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "agent_token_expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "spawned_by" text;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_agent_token_hash_unique" UNIQUE("agent_token_hash");