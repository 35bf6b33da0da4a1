"""The factories ``service.bootstrap`` builds the two processes from: each
takes settings and what earlier factories built, and returns its part whole
(constructor injection; a cycle is closed by a callable handed in)."""
