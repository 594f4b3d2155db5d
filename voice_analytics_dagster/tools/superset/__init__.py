"""Apache Superset serving the dashboards of metabase/ (``voice-analytics superset up | down | status |
install``): installed into a virtualenv of its own (its pins conflict with the pipeline's), reading
the certified schema through the read-only BI role over TCP, provisioned through its REST API.

- ``install.py``: the pinned virtualenv;
- ``server.py``: its configuration, metadata database, admin, and the background web server;
- ``payloads.py``: the specs compiled into Superset's datasets, charts and dashboards (pure);
- ``api.py``: the REST client and the idempotent provisioning.
"""
