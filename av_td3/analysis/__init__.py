"""Reading finished (or running) runs back: event files (``events``), run directories (``runs``), and
the ``validate`` / ``compare`` commands built on them. Nothing is imported here, so each command pays
only for what it uses."""
