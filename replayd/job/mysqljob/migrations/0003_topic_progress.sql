-- 0003: a job's progress per topic (the local delivery_log and the mirrored ones): each topic's
-- checkpoint and counters, job.EncodeTopics' JSON; NULL for a job read from one topic, whose
-- checkpoint is the checkpoint column.
ALTER TABLE replay_jobs ADD COLUMN topic_progress TEXT NULL;
