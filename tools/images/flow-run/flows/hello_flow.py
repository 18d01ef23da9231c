"""The demo's flow (scripts/demo.py): entrypoint `hello_flow.py:hello`, working directory
/opt/prefect/flows (a `set_working_directory` pull step), or `flows/hello_flow.py:hello`
from the image's WORKDIR /opt/prefect."""

from prefect import flow


@flow(log_prints=True)
def hello(name: str = "prefect-job-operator") -> str:
    print(f"Hello from a Kubernetes Job dispatched by {name}!")
    return "done"
