"""The HTTP service and its render workers: the server extra (pip install 'cinegen[server]').

Checked on import, so `cinegen serve` / `cinegen worker` without it is one line naming the extra. psycopg (the
PostgreSQL queue) is checked where --database asks for it."""

from cinegen.extras import require

for _module in ("fastapi", "uvicorn", "python_multipart"):
    require(_module, "server", "the service (cinegen serve, cinegen worker)")
