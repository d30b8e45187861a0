ALTER TABLE "executions" ADD COLUMN "agent_session_hash" text;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "event_count" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "event_bytes" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_agent_session_hash_unique" UNIQUE("agent_session_hash");--> statement-breakpoint
-- Added by hand: ended executions' tokens are revoked, and existing events counted, before the CHECK.
UPDATE "executions" SET "agent_token_hash" = NULL WHERE "status" in ('succeeded', 'failed');--> statement-breakpoint
UPDATE "executions" SET "event_count" = s.n, "event_bytes" = s.bytes FROM (SELECT "execution_id", count(*) AS n, sum(octet_length("data"::text)) AS bytes FROM "execution_events" GROUP BY 1) s WHERE s."execution_id" = "executions"."id";--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_ended_revoked" CHECK (not "executions"."status" in ('succeeded', 'failed') or ("executions"."agent_token_hash" is null and "executions"."agent_session_hash" is null));