"""Stream agents of a policy domain (faust-streaming): forwarding now; consent, minimisation,
aggregates and audit later. Each agent module builds its faust app in ``create_app(...)``,
never at import time; ``agents.run`` loads the files and runs a worker.

Agents are thin edges (shared/STYLE.md): they read bytes from Kafka, call the pure core in
``refmesh`` (open, decide, route, seal) and write bytes back, committing an offset only after
the produce for it was acknowledged.
"""
