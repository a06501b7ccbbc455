-- The W3C traceparent of the FileDeletedEvent that put the file in the trash, so that the
-- purge job, days later, announces the purge in the same trace as the deletion. NULL for rows
-- stored before this migration, or from deletions that carried no trace context.
ALTER TABLE trashed_files ADD COLUMN traceparent text;
