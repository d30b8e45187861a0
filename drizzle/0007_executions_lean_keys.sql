ALTER TABLE "executions" DROP CONSTRAINT "executions_agent_session_hash_unique";--> statement-breakpoint
ALTER TABLE "executions" DROP CONSTRAINT "executions_workflow_id_workflows_id_fk";
--> statement-breakpoint
ALTER TABLE "executions" DROP CONSTRAINT "executions_version_id_workflow_versions_id_fk";
--> statement-breakpoint
CREATE UNIQUE INDEX "executions_agent_session_hash_key" ON "executions" USING btree ("agent_session_hash") WHERE "executions"."agent_session_hash" is not null;