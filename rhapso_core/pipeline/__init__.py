"""Stage functions over datasets: URIs and parameters in, small records out.

Each function here is one unit of work that a Prefect task wraps (``tasks/``) and
that the CLI can also call directly. They read the XML and images themselves, so
what travels between workers is a URI, a view id and a parameter model, never an
image. Still no Prefect or Ray here.
"""
