"""prefect-job-operator: Prefect 3 work pools run by a Kubernetes operator."""

__version__ = "0.1.0"
