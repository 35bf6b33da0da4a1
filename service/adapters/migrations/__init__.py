"""Alembic's migrations of the service's database: ``env.py`` and one file
per revision in ``versions/``, run by ``service.adapters.migrate``
(``python -m service migrate``); there is no ``alembic.ini``."""
