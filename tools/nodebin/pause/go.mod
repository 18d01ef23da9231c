module prefect-job-operator/tools/nodebin/pause

go 1.26.0
