"""`python -m prefect_job_operator` runs the same CLI as the console script."""

from prefect_job_operator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
