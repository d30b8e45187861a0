ALTER TABLE "executions" DROP CONSTRAINT "executions_status_known";--> statement-breakpoint
ALTER TABLE "executions" DROP CONSTRAINT "executions_ended_revoked";--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "output_max_bytes" bigint DEFAULT 4194304 NOT NULL;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "output_event_count" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "output_bytes" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "timeout_seconds" integer;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "cancel_requested_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "last_heartbeat_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "workflows" ADD COLUMN "timeout_seconds" integer;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_status_known" CHECK ("executions"."status" in ('pending', 'booting', 'running', 'succeeded', 'failed', 'cancelled'));--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_ended_revoked" CHECK (not "executions"."status" in ('succeeded', 'failed', 'cancelled') or ("executions"."agent_token_hash" is null and "executions"."agent_session_hash" is null));