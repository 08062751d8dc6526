"""http_traefik: Traefik access logs (module ID 3).

The module object is in :mod:`wiredraw.plugins.http_traefik.module`.
"""
