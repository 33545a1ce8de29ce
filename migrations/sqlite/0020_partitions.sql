-- PostGIS keeps its six high-volume tables in month partitions (migrations/postgres/0020); the
-- embedded store keeps one table each. This file holds the migration numbers of both backends
-- in step.
SELECT 1;
